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


def split_channels(
    x: str, k: int, outliers: np.ndarray
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], list[tuple[str, np.ndarray]]]:
    """Gather the `outliers` input channels of `x` [..., k] apart from the others, so each part
    is quantised with its own row scales: one channel 30x the rest would otherwise leave the
    ordinary channels a handful of levels (LLM.int8()'s observation, kept in int8 here).

    Returns (nodes, initializers, [(part tensor, its channel indices)])."""
    base = _name(x) + "_rowsplit"
    parts = [np.setdiff1d(np.arange(k), outliers), np.sort(outliers)]
    nodes, inits, named = [], [], []
    for i, idx in enumerate(parts):
        name = f"{base}{i}"
        inits.append(numpy_helper.from_array(idx.astype(np.int64), name + "_idx"))
        nodes.append(helper.make_node("Gather", [x, name + "_idx"], [name], name=name, axis=-1))
        named.append((name, idx))
    return nodes, inits, named


def int8_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per-output-column weights of w [K, N]: codes and float32 scales [N]."""
    scale = np.abs(w).max(0).astype(np.float64) / LEVELS
    scale[scale == 0] = 1.0
    q = np.clip(np.round(w / scale), -LEVELS, LEVELS).astype(np.int8)
    return q, scale.astype(np.float32)


Part = tuple[str, str, np.ndarray | None]  # row codes, row scales, input channels (None: all)


def quantise_input(
    x: str, k: int, outliers: np.ndarray | None
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], list[Part]]:
    """Row-quantise `x` [..., k] whole, or as two parts when `outliers` channels are given."""
    if outliers is None or not len(outliers):
        nodes, inits, codes, scale = quantise_rows(x)
        return nodes, inits, [(codes, scale, None)]
    nodes, inits, named = split_channels(x, k, outliers)
    parts: list[Part] = []
    for tensor, idx in named:
        q_nodes, q_inits, codes, scale = quantise_rows(tensor)
        nodes += q_nodes
        inits += q_inits
        parts.append((codes, scale, idx))
    return nodes, inits, parts


def rowwise_matmul(
    node: onnx.NodeProto, w: np.ndarray, parts: list[Part]
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Replace MatMul(x, w) given x's row-quantised parts (from `quantise_input`): one
    MatMulIntegerToFloat per part times its row scales, summed."""
    base = _name(node.name) or node.output[0]
    nodes, inits, partials = [], [], []
    for i, (codes, scale, idx) in enumerate(parts):
        q, w_scale = int8_columns(w if idx is None else w[idx])
        name = f"{base}_p{i}" if len(parts) > 1 else base
        inits += [
            numpy_helper.from_array(q, name + "_qweight"),
            numpy_helper.from_array(w_scale, name + "_scales"),
            numpy_helper.from_array(np.array(1.0 / LEVELS, np.float32), name + "_x_step"),
            numpy_helper.from_array(np.array(128, np.uint8), name + "_x_zero"),
        ]
        out = node.output[0] if len(parts) == 1 else f"{node.output[0]}_p{i}"
        nodes += [
            helper.make_node(
                "MatMulIntegerToFloat",
                [codes, *(name + p for p in ("_qweight", "_x_step", "_scales", "_x_zero"))],
                [out + "_unscaled"],
                name=f"{node.name}_Q8row{i}",
                domain=MS_DOMAIN,
            ),
            helper.make_node("Mul", [out + "_unscaled", scale], [out], name=f"{node.name}_rs{i}"),
        ]
        partials.append(out)
    if len(partials) > 1:
        nodes.append(helper.make_node("Sum", partials, list(node.output), name=node.name + "_sum"))
    return nodes, inits
