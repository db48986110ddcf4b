"""Per-row (per-token) dynamic int8 MatMuls on ONNX Runtime's VNNI GEMM.

ONNX Runtime's fast int8 path (`DynamicQuantizeMatMul`) takes one activation scale for the
whole tensor, so a single outlier token (EmbeddingGemma's activations reach |x| = 280 on a few
tokens) flattens every other token to a handful of levels: mean cosine 0.976 on real text.
`MatMulNBits` keeps a scale per row and block and so keeps the vectors, but its int8 kernel
runs at a third of the GEMM's speed at batch sizes of thousands of tokens.

This kernel keeps one scale per token row and still runs the GEMM: each row is scaled to
[-127, 127] by its own max |x| and stored as uint8 around 128, `MatMulIntegerToFloat`
multiplies it by int8 per-column weights (u8 x s8, the VNNI instruction; s8 x s8 measured 20x
slower), and the row's step is applied to the float result::

    s   = max(|x|, axis=-1) / 127                        [..., 1]
    q   = QuantizeLinear(x, s, 128), one block per row   uint8: round(x / s) + 128
    y   = MatMulIntegerToFloat(q, Wq, 1, w_scale)        float, per-column weight scales
    out = y * s

Exact in real arithmetic up to the two roundings. The row's block-wise `QuantizeLinear`
(opset 21) divides as it rounds, so no float copy x / s is written (0.10 against 0.24 ms for
a Div and a per-tensor QuantizeLinear over 1024 x 768, one-op graphs, best of 50, ad
hoc); its zero point must have the step's shape, so one [..., 1] tensor of 128s is made
once (from the first step's shape) and shared by every quantised input of the graph.
MatMuls sharing one input (q/k/v, gate/up) share one quantised copy of it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .blockquant import int8_columns

MS_DOMAIN = "com.microsoft"
LEVELS = 127.0  # symmetric: codes 1..255 around the zero point 128
REMAINDER = 2 * LEVELS  # the remainder's step: |r| <= s / 2 spans the codes again


def _name(node_or_tensor: str) -> str:
    return node_or_tensor.strip("/").replace("/", "_")


def quantise_rows(
    x: str, width: int, zero: str | None = None
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str, str, str]:
    """Nodes that quantise tensor `x` [..., width] row by row: codes round(x / s) + 128 with
    s = max|x| / 127. `zero` names a [..., 1] uint8 tensor of 128s of the graph's row shape;
    if None, it is made here from this row step's shape, to be passed to every later call.
    Returns (nodes, initializers, uint8 codes name, row step name [..., 1], zero name)."""
    base = _name(x) + "_rowq"
    inits = [
        numpy_helper.from_array(np.array([-1], np.int64), base + "_axis"),
        numpy_helper.from_array(np.array(1e-30, np.float32), base + "_tiny"),
        numpy_helper.from_array(np.array(1.0 / LEVELS, np.float32), base + "_per_level"),
    ]
    codes, step = base + "_codes", base + "_step"
    nodes = [
        helper.make_node("Abs", [x], [base + "_abs"], name=base + "/Abs"),
        helper.make_node(
            "ReduceMax",
            [base + "_abs", base + "_axis"],
            [base + "_max"],
            name=base + "/Max",
            keepdims=1,
        ),
        # a row of zeros keeps a usable step (its codes are all 128 either way)
        helper.make_node("Max", [base + "_max", base + "_tiny"], [base + "_floor"],
                         name=base + "/Floor"),
        helper.make_node("Mul", [base + "_floor", base + "_per_level"], [step],
                         name=base + "/Step"),
    ]
    if zero is None:
        zero = base + "_zero"
        nodes += [
            helper.make_node("Shape", [step], [base + "_rows"], name=base + "/Rows"),
            helper.make_node(
                "ConstantOfShape",
                [base + "_rows"],
                [zero],
                name=base + "/Zero",
                value=numpy_helper.from_array(np.array([128], np.uint8)),
            ),
        ]
    nodes.append(_quantise(x, step, zero, codes, base + "/Quantize", width))
    return nodes, inits, codes, step, zero


def _quantise(x: str, step: str, zero: str, codes: str, name: str, width: int) -> onnx.NodeProto:
    """Block-wise QuantizeLinear with one block per row: round(x / step) + zero, the
    division done as it rounds (no float copy of x / step is written)."""
    return helper.make_node(
        "QuantizeLinear", [x, step, zero], [codes], name=name, axis=-1, block_size=width
    )


def remainder_rows(
    x: str, width: int, codes: str, step: str, zero: str
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str]:
    """Nodes that quantise what the row codes of `x` rounded away: r = x - s * (codes - 128)
    lies in [-s/2, s/2], so codes round(r / (s / 254)) + 128 carry it at the same 8 bits, and
    the two passes together resolve each row to about 15 bits. Returns (nodes, initializers,
    the remainder's uint8 codes); their step is s / REMAINDER, applied by `rowwise_matmul`."""
    base = _name(x) + "_rowr"
    inits = [
        numpy_helper.from_array(np.array(1.0, np.float32), base + "_one"),
        numpy_helper.from_array(np.array(128, np.uint8), base + "_z128"),
        numpy_helper.from_array(np.array(1.0 / REMAINDER, np.float32), base + "_fine"),
    ]
    rest = base + "_codes"
    nodes = [  # a per-tensor DequantizeLinear and a Mul: 2x faster than a block-wise one
        helper.make_node(
            "DequantizeLinear", [codes, base + "_one", base + "_z128"], [base + "_levels"],
            name=base + "/Levels",
        ),
        helper.make_node(
            "Mul", [base + "_levels", step], [base + "_rounded"], name=base + "/Rounded"
        ),
        helper.make_node("Sub", [x, base + "_rounded"], [base + "_rest"], name=base + "/Rest"),
        helper.make_node("Mul", [step, base + "_fine"], [base + "_step"], name=base + "/Step"),
        _quantise(base + "_rest", base + "_step", zero, rest, base + "/Quantize", width),
    ]
    return nodes, inits, rest


def rowwise_matmul(
    node: onnx.NodeProto,
    w: np.ndarray,
    codes: str,
    scale: str,
    remainder: str | None = None,
    columns: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Replace MatMul(x, w) given x's row codes and row steps (from `quantise_rows`):
    MatMulIntegerToFloat, then times the row steps. With `remainder` (the codes from
    `remainder_rows`), a second GEMM of the same weights adds their share, at 1/REMAINDER.
    `columns`: int8 weights and column scales to use (default: `int8_columns(w)`). The first
    two initializers returned are the int8 weights and their column scales."""
    q, w_scale = int8_columns(w) if columns is None else columns
    base = _name(node.name) or node.output[0]
    inits = [
        numpy_helper.from_array(q, base + "_qweight"),
        numpy_helper.from_array(w_scale, base + "_scales"),
        numpy_helper.from_array(np.array(1.0, np.float32), base + "_x_step"),
        numpy_helper.from_array(np.array(128, np.uint8), base + "_x_zero"),
    ]
    unscaled = node.output[0] + "_unscaled"

    def gemm(a: str, scales: str, out: str, tag: str) -> onnx.NodeProto:
        weights = [base + "_qweight", base + "_x_step", scales, base + "_x_zero"]
        return helper.make_node(
            "MatMulIntegerToFloat", [a, *weights], [out], name=node.name + tag, domain=MS_DOMAIN
        )

    nodes = [gemm(codes, base + "_scales", unscaled, "_Q8row")]
    if remainder is not None:  # the weight scales / REMAINDER fold the remainder's step in
        inits.append(numpy_helper.from_array(w_scale / REMAINDER, base + "_fine_scales"))
        nodes += [
            gemm(remainder, base + "_fine_scales", unscaled + "_rest", "_Q8rest"),
            helper.make_node(
                "Add", [unscaled + "_rest", unscaled], [unscaled + "_sum"], name=node.name + "_sum"
            ),
        ]
        unscaled += "_sum"
    nodes.append(
        helper.make_node("Mul", [unscaled, scale], list(node.output), name=node.name + "_rs")
    )
    return nodes, inits
