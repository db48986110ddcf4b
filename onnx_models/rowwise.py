"""Per-row (per-token) dynamic int8 MatMuls on ONNX Runtime's VNNI GEMM.

ONNX Runtime's fast int8 path (`DynamicQuantizeMatMul`) takes one activation scale for the
whole tensor, so a single outlier token (EmbeddingGemma's activations reach |x| = 280 on a few
tokens) flattens every other token to a handful of levels: mean cosine 0.976 on real text.
`MatMulNBits` keeps a scale per row and block and so keeps the vectors, but its int8 kernel
runs at a third of the GEMM's speed at batch sizes of thousands of tokens.

This kernel keeps one scale per token row and still runs the GEMM: each row is scaled to
[-127, 127] by its own max |x| and stored as uint8 around 128, `MatMulIntegerToFloat`
multiplies it by int8 per-column weights (u8 x s8, the VNNI instruction), and the row's scale
is applied to the float result::

    m   = max(|x|, axis=-1)                              [..., 1]
    q   = QuantizeLinear(x / m, 1/127, 128)              uint8: round(127 x / m) + 128
    y   = MatMulIntegerToFloat(q, Wq, 1/127, w_scale)    float, per-column weight scales
    out = y * m

Exact in real arithmetic up to the two roundings. MatMuls sharing one input (q/k/v, gate/up)
share one quantised copy of it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .blockquant import int8_columns

MS_DOMAIN = "com.microsoft"
LEVELS = 127.0  # symmetric: codes 1..255 around the zero point 128


def _name(node_or_tensor: str) -> str:
    return node_or_tensor.strip("/").replace("/", "_")


def quantise_rows(x: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str, str]:
    """Nodes that quantise tensor `x` [..., K] row by row: codes round(127 x / max|x|) + 128.

    The 1/127 lives in QuantizeLinear's and the GEMM's constant activation scale, so the row
    scale is max|x| itself (five nodes per quantised input, not six).
    Returns (nodes, initializers, uint8 codes name, row max name [..., 1])."""
    base = _name(x) + "_rowq"
    inits = [
        numpy_helper.from_array(np.array([-1], np.int64), base + "_axis"),
        numpy_helper.from_array(np.array(1e-30, np.float32), base + "_tiny"),
        numpy_helper.from_array(np.array(1.0 / LEVELS, np.float32), base + "_step"),
        numpy_helper.from_array(np.array(128, np.uint8), base + "_zero"),
    ]
    codes, scale = base + "_codes", base + "_scale"
    nodes = [
        helper.make_node("Abs", [x], [base + "_abs"], name=base + "/Abs"),
        helper.make_node(
            "ReduceMax",
            [base + "_abs", base + "_axis"],
            [base + "_max"],
            name=base + "/Max",
            keepdims=1,
        ),
        # a row of zeros keeps a usable scale (its codes are all 128 either way)
        helper.make_node("Max", [base + "_max", base + "_tiny"], [scale], name=base + "/Floor"),
        helper.make_node("Div", [x, scale], [base + "_unit"], name=base + "/Div"),
        helper.make_node(
            "QuantizeLinear",
            [base + "_unit", base + "_step", base + "_zero"],
            [codes],
            name=base + "/Quantize",
        ),
    ]
    return nodes, inits, codes, scale


def rowwise_matmul(
    node: onnx.NodeProto, w: np.ndarray, codes: str, scale: str
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Replace MatMul(x, w) given x's row codes and row maxima (from `quantise_rows`):
    MatMulIntegerToFloat, then times the row maxima."""
    q, w_scale = int8_columns(w)
    base = _name(node.name) or node.output[0]
    inits = [
        numpy_helper.from_array(q, base + "_qweight"),
        numpy_helper.from_array(w_scale, base + "_scales"),
        numpy_helper.from_array(np.array(1.0 / LEVELS, np.float32), base + "_x_step"),
        numpy_helper.from_array(np.array(128, np.uint8), base + "_x_zero"),
    ]
    unscaled = node.output[0] + "_unscaled"
    nodes = [
        helper.make_node(
            "MatMulIntegerToFloat",
            [codes, *(base + p for p in ("_qweight", "_x_step", "_scales", "_x_zero"))],
            [unscaled],
            name=node.name + "_Q8row",
            domain=MS_DOMAIN,
        ),
        helper.make_node("Mul", [unscaled, scale], list(node.output), name=node.name + "_rs"),
    ]
    return nodes, inits
