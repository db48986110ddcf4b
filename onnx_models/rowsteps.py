"""Leave out the per-row int8 GEMMs' output scaling where an RMSNorm undoes it (`row_steps`).

A per-row int8 GEMM (onnx_models/rowwise.py) computes y = x @ W as (x / s) @ W and then
multiplies each row by its step s. Where a tensor flows, row for row, only into an RMSNorm
over its last axis, that multiplication is nearly wasted: Gemma's RMSNorm is
x / sqrt(mean(x**2) + eps) * w, so leaving a row unscaled changes only how much eps weighs
in it (by the factor s**2). In EmbeddingGemma

- o_proj's output goes straight to post_attention_layernorm: its `Mul` goes;
- q and k of the merged q/k/v GEMM go to q_norm / k_norm (through a head-split Reshape,
  which keeps each token's row): only v, a fifth of the columns, is scaled, after the Split.

A tensor counts as absorbed when every user is an RMSNorm over its last axis or a
token-preserving Reshape whose output is absorbed in turn. The same reasoning through
linear ops (gate/up: up is multiplied into gelu(gate), then down_proj, then
post_feedforward_layernorm) is exact in real arithmetic only without eps, and eps is not
negligible there: down_proj's outputs are small enough in some rows that leaving up
unscaled cost a minimum cosine of 0.972 against the scaled graph (132 benchmark documents,
ad hoc), so it is not
done. Run it after `flat_heads`, on the graph's final layout."""

from __future__ import annotations

import onnx
from onnx import helper

from . import graph as G

NORM = "SimplifiedLayerNormalization"


def row_steps(model: onnx.ModelProto) -> int:
    """Drop or narrow the row-step `Mul` after each per-row GEMM; returns the number changed."""
    prod, cons, inits = G.producers(model), G.consumers(model, outputs=True), G.initializers(model)
    changed, added = 0, list[onnx.NodeProto]()
    for gemm in [n for n in model.graph.node if n.op_type == "MatMulIntegerToFloat"]:
        users = cons.get(gemm.output[0], [])
        if len(users) != 1 or users[0].op_type != "Mul" or gemm.output[0] not in users[0].input:
            continue
        mul = users[0]
        step = mul.input[1] if mul.input[0] == gemm.output[0] else mul.input[0]
        scaled = mul.output[0]
        if _absorbed(scaled, cons, inits, prod):
            G.read_instead(cons, scaled, gemm.output[0])
        else:
            split = cons.get(scaled, [])
            if len(split) != 1 or split[0].op_type != "Split":
                continue
            parts = [o for o in split[0].output if not _absorbed(o, cons, inits, prod)]
            if len(parts) == len(split[0].output):
                continue  # nothing absorbed: the one Mul before the Split is cheaper
            split[0].input[0] = gemm.output[0]
            for part in parts:  # scaled after the Split, for the users that need it
                name = part + "_stepped"
                G.read_instead(cons, part, name)
                added.append(helper.make_node("Mul", [part, step], [name], name=name))
        changed += 1  # the Mul has no users left: prune drops it
    if changed:
        model.graph.node.extend(added)
        G.toposort(model)
        G.prune(model)
    return changed


def _absorbed(
    name: str,
    cons: dict[str, list[onnx.NodeProto]],
    inits: dict[str, onnx.TensorProto],
    prod: dict[str, onnx.NodeProto],
) -> bool:
    """Whether scaling each row of `name` by its own positive factor changes no output."""
    users = cons.get(name, [])
    return bool(users) and all(_absorbs(u, name, cons, inits, prod) for u in users)


def _absorbs(
    user: onnx.NodeProto,
    name: str,
    cons: dict[str, list[onnx.NodeProto]],
    inits: dict[str, onnx.TensorProto],
    prod: dict[str, onnx.NodeProto],
) -> bool:
    if user.op_type == NORM and user.input[0] == name:
        extra_outputs_used = any(cons.get(o) for o in user.output[1:] if o)
        axis = next((a.i for a in user.attribute if a.name == "axis"), -1)
        return axis == -1 and not extra_outputs_used
    if user.op_type == "Reshape" and user.input[0] == name:
        shape = G.constant_ints(user.input[1], inits, prod)
        keeps_rows = shape is not None and shape[:2] == [0, 0]  # [batch, tokens, ...] stays
        return keeps_rows and _absorbed(user.output[0], cons, inits, prod)
    return False

