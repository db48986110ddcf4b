"""The mean pooling's masked sum as one row-times-matrix product per text (`matmul_pooling`).

The exporter pools as
    ReduceSum(Mul(x, Cast(Expand(Unsqueeze(attention_mask, -1)))), axis 1)    [B, H]
and ONNX Runtime's ReduceSum sums a batch of one ([1, T, H]) by another path than a batch
of several: a text's pooled row alone and in a batch differ at float32 rounding (9e-5 on
a sum of 140 rows, a 4-layer model of EmbeddingGemma's width). A head that quantises its
input (int4's 8-bit `MatMulNBits`, int8 activations per block) turns that now and then into
a flipped code: 7e-5 on the vector. This pass writes the same sum as
    Squeeze(MatMul(Unsqueeze(mask, 1), x), 1)    [B, 1, T'] x [B, T', H]
one product per text, by the same kernel at any batch size. MLAS's one-row kernel still
rounds a tail of the token axis its own way (an odd count here), so mask and tokens are
zero-padded to T' = a multiple of `TOKEN_BLOCK`: a text then sums the same products in the
same order alone, in a batch, and under any padding (one-op graphs: bit for bit at batch
sizes 1 to 8, padding 0 to 100, any row; 1.5e-5 apart without the padding, 3.7e-4 as
ReduceSum). Same sum in another order than the exporter's: float32 rounding.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto

from . import graph as G
from .builder import Builder

MASK = "attention_mask"
PREFIX = "pool"
TOKEN_BLOCK = 64  # 2 sufficed on the AVX-512 kernel; 64 leaves room for wider unrolling


def matmul_pooling(model: onnx.ModelProto, block: int = TOKEN_BLOCK) -> int:
    """Rewrite every masked token sum over axis 1 as a batched MatMul; returns how many."""
    prod, cons, inits = G.producers(model), G.consumers(model, outputs=True), G.initializers(model)
    b, rows, x_pads, done = Builder(PREFIX), "", "", 0
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
        if not rows:  # the mask as one zero-padded float row per text, shared by every pooling
            _, tokens = b.batch_and_tokens()
            blocks = b.op("Div", [b.op("Add", [tokens, b.c("block_less_one", block - 1)], "t1"),
                                  b.c("block", block)], "blocks")
            extra = b.vec(b.op("Sub", [b.op("Mul", [blocks, b.c("block", block)], "padded"),
                                       tokens], "extra"), "extra_1")
            z1 = b.c("z1", [0])
            mask = b.op("Cast", [MASK], "mask_f", to=TensorProto.FLOAT)
            mask = b.op("Pad", [mask, b.op("Concat", [z1, z1, z1, extra], "mask_pads", axis=0)],
                        "mask_p")
            rows = b.op("Unsqueeze", [mask, b.c("axis1", [1])], "rows")  # [B, 1, T']
            x_pads = b.op("Concat", [z1, z1, z1, z1, extra, z1], "x_pads", axis=0)
        tag = f"{PREFIX}{done}"
        red.CopyFrom(onnx.helper.make_node("Squeeze", [tag + "_sum", b.c("axis1", [1])],
                                           list(red.output), name=tag + "/Squeeze"))
        mul.CopyFrom(onnx.helper.make_node("Pad", [x, x_pads], [tag + "_x"], name=tag + "/Pad"))
        b.nodes.append(onnx.helper.make_node("MatMul", [rows, tag + "_x"], [tag + "_sum"],
                                             name=tag + "/MatMul"))
        done += 1
    if done:
        model.graph.initializer.extend(b.consts.values())
        model.graph.node.extend(b.nodes)
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
