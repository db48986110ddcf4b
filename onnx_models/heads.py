"""Keep q/k/v and attention in token-major [batch, tokens, heads x dim] layout (`flat_heads`).

The exporter splits each projection into heads and moves the head axis forward,
    Reshape(x, [0, 0, -1, D]) -> Transpose(0, 2, 1, 3)      [batch, heads, tokens, D]
for q, k and v, and back again after attention (Transpose, Reshape): four copies of an
activation per layer, 96 Transpose nodes, the largest group of the per-node launches that
dominate a short query. ONNX `Attention` and `RotaryEmbedding` (opset 23) both take 3-D
[batch, tokens, hidden] inputs given their head counts, and a per-head RMSNorm (q_norm,
k_norm) only needs the [batch, tokens, heads, D] *view* (a Reshape, no copy). So each chain
    Reshape -> Transpose -> [RMSNorm] -> [RotaryEmbedding] -> Attention -> Transpose -> Reshape
becomes
    [Reshape -> RMSNorm -> Reshape] -> [RotaryEmbedding(num_heads)] -> Attention(heads) -> .
with the same arithmetic (a single-head k or v needs no Reshape at all).

Run it after `rotary` (it matches `RotaryEmbedding` on 4-D q and k) and `attention`.
The head counts come from the Split that cuts the merged q/k/v projection (`merge_matmuls`)
or from the Reshape itself; a layer where neither says is left as it is."""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import helper

from . import graph as G

PER_HEAD = ("SimplifiedLayerNormalization", "RotaryEmbedding")  # ops that read the last axis
SWAP = [0, 2, 1, 3]  # [batch, tokens, heads, D] <-> [batch, heads, tokens, D]
FLAT = "flat_heads_shape"  # [0, 0, -1]: back to [batch, tokens, heads x D]


@dataclass
class _Input:
    """One of q/k/v: the 3-D tensor, its [batch, tokens, heads, D] Reshape view, the per-head
    ops between the head split and Attention (in order), and the head count."""

    flat: str
    view: str
    ops: list[onnx.NodeProto]
    heads: int


def flat_heads(model: onnx.ModelProto) -> int:
    """Rewrite every matched attention to token-major layout; returns the number rewritten."""
    prod, cons, inits = G.producers(model), G.consumers(model, outputs=True), G.initializers(model)
    done, added = 0, list[onnx.NodeProto]()
    for att in [n for n in model.graph.node if n.op_type == "Attention" and n.domain == ""]:
        if any(a.name in ("q_num_heads", "kv_num_heads") for a in att.attribute):
            continue  # already token-major
        q, k, v = (_input(name, prod, cons, inits) for name in att.input[:3])
        merged = _merged_output(att, prod, cons, inits)
        if q is None or k is None or v is None or merged is None or v.ops or k.heads != v.heads:
            continue
        for index, item in enumerate((q, k, v)):
            att.input[index] = _rewire(item, added)
        att.attribute.extend(
            [
                helper.make_attribute("q_num_heads", q.heads),
                helper.make_attribute("kv_num_heads", k.heads),
            ]
        )
        G.read_instead(cons, merged, att.output[0])
        done += 1
    if done:
        if FLAT not in inits:
            model.graph.initializer.append(
                helper.make_tensor(FLAT, onnx.TensorProto.INT64, [3], [0, 0, -1])
            )
        model.graph.node.extend(added)
        G.toposort(model)
        G.prune(model)  # the bypassed Transposes and Reshapes have no users left
    return done


def _rewire(item: _Input, added: list[onnx.NodeProto]) -> str:
    """Feed `item`'s per-head ops from its 3-D tensor; the name Attention now reads (3-D)."""
    current, four_d = item.flat, False
    for op in item.ops:
        if op.op_type == PER_HEAD[0] and item.heads > 1 and not four_d:
            current, four_d = item.view, True
        elif op.op_type == PER_HEAD[1]:
            if four_d:
                current, four_d = _flatten(current, added), False
            op.attribute.append(helper.make_attribute("num_heads", item.heads))
        op.input[0] = current
        current = op.output[0]
    return _flatten(current, added) if four_d else current


def _flatten(name: str, added: list[onnx.NodeProto]) -> str:
    out = name + "_flat"
    added.append(helper.make_node("Reshape", [name, FLAT], [out], name=out + "/Reshape"))
    return out


def _input(
    name: str,
    prod: dict[str, onnx.NodeProto],
    cons: dict[str, list[onnx.NodeProto]],
    inits: dict[str, onnx.TensorProto],
) -> _Input | None:
    """Walk back from an Attention input over per-head ops to the head split, or None."""
    ops: list[onnx.NodeProto] = []
    node = prod.get(name)
    while node is not None and node.op_type in PER_HEAD and _single_use(node, cons):
        if node.op_type == PER_HEAD[0] and _axis(node) != -1:
            return None
        if node.op_type == PER_HEAD[1] and any(a.name == "num_heads" for a in node.attribute):
            return None
        ops.insert(0, node)
        node = prod.get(node.input[0])
    if node is None or node.op_type != "Transpose" or _perm(node) != SWAP:
        return None
    reshape = prod.get(node.input[0])
    if reshape is None or reshape.op_type != "Reshape" or not _single_use(node, cons):
        return None
    shape = G.constant_ints(reshape.input[1], inits, prod)
    if shape is None or len(shape) != 4 or shape[:2] != [0, 0] or shape[3] <= 0:
        return None
    if len(cons.get(reshape.output[0], [])) != 1:
        return None
    heads = shape[2] if shape[2] > 0 else _width(reshape.input[0], prod, inits) // shape[3]
    return _Input(reshape.input[0], reshape.output[0], ops, heads) if heads > 0 else None


def _merged_output(
    att: onnx.NodeProto,
    prod: dict[str, onnx.NodeProto],
    cons: dict[str, list[onnx.NodeProto]],
    inits: dict[str, onnx.TensorProto],
) -> str | None:
    """The [batch, tokens, heads x D] tensor of Attention -> Transpose(0, 2, 1, 3) ->
    Reshape([0, 0, -1]), each the only user and the Reshape not a graph output, or None."""
    users = cons.get(att.output[0], [])
    if len(users) != 1 or users[0].op_type != "Transpose" or _perm(users[0]) != SWAP:
        return None
    after = cons.get(users[0].output[0], [])
    if len(after) != 1 or after[0].op_type != "Reshape":
        return None
    shape = G.constant_ints(after[0].input[1], inits, prod)
    if shape != [0, 0, -1]:
        return None
    if any(u.op_type == G.GRAPH_OUTPUT for u in cons.get(after[0].output[0], [])):
        return None
    return str(after[0].output[0])


def _width(name: str, prod: dict[str, onnx.NodeProto], inits: dict[str, onnx.TensorProto]) -> int:
    """Last-axis width of a Split output whose sizes are constant (the merged q/k/v), else 0."""
    split = prod.get(name)
    if split is None or split.op_type != "Split" or len(split.input) < 2:
        return 0
    sizes = G.constant_ints(split.input[1], inits, prod)
    index = list(split.output).index(name)
    return sizes[index] if sizes is not None and index < len(sizes) else 0


def _single_use(node: onnx.NodeProto, cons: dict[str, list[onnx.NodeProto]]) -> bool:
    return len(node.output) == 1 and len(cons.get(node.output[0], [])) == 1


def _perm(node: onnx.NodeProto) -> list[int]:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), [])


def _axis(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), -1)
