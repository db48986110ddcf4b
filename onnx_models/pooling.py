"""The mean pooling's masked sum as one row-times-matrix product per text (`matmul_pooling`).

The exporter pools as
    ReduceSum(Mul(x, Cast(Expand(Unsqueeze(attention_mask, -1)))), axis 1)    [B, H]
and ONNX Runtime's ReduceSum sums a batch of one ([1, T, H]) by another path than a batch
of several: a text's pooled row alone and in a batch differ at float32 rounding (9e-5 on
a sum of 140 rows, a 4-layer model of EmbeddingGemma's width). A head that quantises its
input (int4's 8-bit `MatMulNBits`, int8 activations per block) turns that now and then into
a flipped code: 7e-5 on the vector. This pass writes the same sum as
    Squeeze(MatMul(Unsqueeze(Cast(attention_mask), 1), x), 1)    [B, 1, T] x [B, T, H]
one product per text, by the same kernel at any batch size, padding adding exact zeros
(measured: the pooled row, the head's output and the vector bit for bit the same alone and
in batches of 2 to 8), and the masked [B, T, H] copy is no longer written. Same sum in
another order: float32 rounding.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import graph as G

MASK = "attention_mask"
PREFIX = "pool_"


def matmul_pooling(model: onnx.ModelProto) -> int:
    """Rewrite every masked token sum over axis 1 as a batched MatMul; returns how many."""
    prod, cons, inits = G.producers(model), G.consumers(model, outputs=True), G.initializers(model)
    done = 0
    for red in [n for n in model.graph.node if n.op_type == "ReduceSum"]:
        mul = prod.get(red.input[0])
        keepdims = next((a.i for a in red.attribute if a.name == "keepdims"), 1)
        axes = G.constant_ints(red.input[1], inits, prod) if len(red.input) > 1 else None
        if mul is None or mul.op_type != "Mul" or keepdims != 0 or axes != [1]:
            continue
        x = next((i for i, other in zip(mul.input, mul.input[::-1], strict=True)
                  if _expanded_mask(other, prod, inits)), None)
        if x is None or len(cons.get(mul.output[0], [])) != 1:
            continue
        if not done:  # the mask as one float row per text, shared by every pooling
            axis = numpy_helper.from_array(np.array([1], np.int64), PREFIX + "axis1")
            model.graph.initializer.append(axis)
            model.graph.node.extend([
                helper.make_node("Cast", [MASK], [PREFIX + "mask_f"], to=TensorProto.FLOAT,
                                 name=PREFIX + "mask/Cast"),
                helper.make_node("Unsqueeze", [PREFIX + "mask_f", axis.name], [PREFIX + "rows"],
                                 name=PREFIX + "mask/Unsqueeze"),
            ])
        tag = f"{PREFIX}{done}"
        red.CopyFrom(helper.make_node("Squeeze", [tag + "_sum", PREFIX + "axis1"],
                                      list(red.output), name=tag + "/Squeeze"))
        mul.CopyFrom(helper.make_node("MatMul", [PREFIX + "rows", x], [tag + "_sum"],
                                      name=tag + "/MatMul"))
        done += 1
    if done:
        G.toposort(model)
        G.prune(model)
    return done


def _expanded_mask(
    name: str, prod: dict[str, onnx.NodeProto], inits: dict[str, onnx.TensorProto]
) -> bool:
    """Whether `name` is the float attention mask broadcast over the hidden axis: Cast of
    (Expand of) Unsqueeze(attention_mask, last axis)."""
    node = prod.get(name)
    if node is None or node.op_type != "Cast":
        return False
    node = prod.get(node.input[0])
    if node is not None and node.op_type == "Expand":
        node = prod.get(node.input[0])
    if node is None or node.op_type != "Unsqueeze" or node.input[0] != MASK:
        return False
    axes = G.constant_ints(node.input[1], inits, prod) if len(node.input) > 1 else None
    return axes in ([-1], [2])
