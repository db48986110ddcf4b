"""Fuse the exporter's rotary position embedding into ONNX `RotaryEmbedding` (opset 23).

The exporter writes rotate-half rotary embedding for q and k of every layer as seven nodes,
    Add(Mul(x, cos), Mul(Concat(Neg(Slice(x, h:)), Slice(x, :h)), sin)),
with cos/sin of shape [1, 1, tokens, 2h] (the frequencies repeated twice). That is 336 nodes
of element-wise work over q and k, each a kernel launch on a short query. One
`RotaryEmbedding` computes the same products per element (x1*cos - x2*sin, x2*cos + x1*sin)
from caches of the frequencies' first half, cos/sin of [tokens, h] built once per graph run
from the exporter's own frequency tensor, with positions 0..tokens-1 for every row (right
padding, as the tokenizer pads). Each rotary kind (Gemma 3 has a local and a global base)
gets its own pair of caches.

Run it after `lean_shapes`, which turns the Slice bounds into constants this match checks.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from . import graph as G

ROTARY_OPSET = 23  # the first opset with a standard RotaryEmbedding operator


def rotary(model: onnx.ModelProto) -> int:
    """Replace every matched rotate-half chain by `RotaryEmbedding`; returns the number fused."""
    if not any(i.name == "input_ids" for i in model.graph.input):
        return 0  # positions come from input_ids' shape
    prod, inits = G.producers(model), G.initializers(model)
    caches: dict[str, str] = {}  # exporter's [1, 1, T, 2h] cos/sin tensor -> [T, h] cache
    new_nodes: list[onnx.NodeProto] = []
    fused = 0
    for add in [n for n in model.graph.node if n.op_type == "Add"]:
        match = _match(add, prod, inits)
        if match is None:
            continue
        x, tables, half = match
        cos, sin = (_cache(t, half, prod, inits, caches, new_nodes) for t in tables)
        if cos is None or sin is None:
            continue
        if fused == 0:
            new_nodes.extend(_positions(model))
        add.CopyFrom(
            helper.make_node(
                "RotaryEmbedding",
                [x, cos, sin, "rotary_position_ids"],
                [add.output[0]],
                name=add.name.replace("Add", "RotaryEmbedding"),
            )
        )
        fused += 1
    if fused:
        model.graph.node.extend(new_nodes)
        G.require_opset(model, ROTARY_OPSET)
        G.toposort(model)
        G.prune(model)
    return fused


def _match(
    add: onnx.NodeProto, prod: dict[str, onnx.NodeProto], inits: dict[str, onnx.TensorProto]
) -> tuple[str, tuple[str, str], int] | None:
    """(x, (cos, sin), h) when `add` is x*cos + rotate_half(x)*sin with halves of h, else None."""
    muls = [prod.get(i) for i in add.input]
    if len(muls) != 2 or any(m is None or m.op_type != "Mul" for m in muls):
        return None
    for plain, rotated in (muls, muls[::-1]):
        assert plain is not None and rotated is not None
        for k in (0, 1):
            concat = prod.get(rotated.input[k])
            if concat is None or concat.op_type != "Concat" or len(concat.input) != 2:
                continue
            halves = _rotate_half_input(concat, prod, inits)
            if halves is None or halves[0] not in plain.input:
                continue
            x, half = halves
            cos = plain.input[1 - list(plain.input).index(x)]
            return x, (cos, rotated.input[1 - k]), half
    return None


def _rotate_half_input(
    concat: onnx.NodeProto, prod: dict[str, onnx.NodeProto], inits: dict[str, onnx.TensorProto]
) -> tuple[str, int] | None:
    """(x, h) when `concat` is Concat(Neg(x[..., h:]), x[..., :h]) along the last axis."""
    neg, first = prod.get(concat.input[0]), prod.get(concat.input[1])
    axis = next((a.i for a in concat.attribute if a.name == "axis"), None)
    if neg is None or neg.op_type != "Neg" or first is None or axis not in (-1, 3):
        return None
    second = prod.get(neg.input[0])
    halves = [_last_axis_slice(s, prod, inits) for s in (first, second)]
    if halves[0] is None or halves[1] is None or halves[0][0] != halves[1][0]:
        return None
    (x, (a0, b0)), (_, (a1, b1)) = halves  # type: ignore[misc]
    return (x, b0) if a0 == 0 and a1 == b0 > 0 and b1 >= 2 * b0 else None


def _last_axis_slice(
    node: onnx.NodeProto | None, prod: dict[str, onnx.NodeProto], inits: dict[str, onnx.TensorProto]
) -> tuple[str, tuple[int, int]] | None:
    """(x, (start, end)) of a unit-step Slice of x along its last (4-D) axis."""
    if node is None or node.op_type != "Slice" or len(node.input) < 4:
        return None
    values = [G.constant(i, inits, prod) for i in node.input[1:]]
    if any(v is None or np.asarray(v).size != 1 for v in values):
        return None
    start, end, axis, *step = (int(np.asarray(v).item()) for v in values)
    if axis not in (-1, 3) or step not in ([], [1]):
        return None
    return node.input[0], (start, end)


def _cache(
    table: str,
    half: int,
    prod: dict[str, onnx.NodeProto],
    inits: dict[str, onnx.TensorProto],
    caches: dict[str, str],
    new_nodes: list[onnx.NodeProto],
) -> str | None:
    """A [T, h] cache for the exporter's Unsqueeze(Cos|Sin(Transpose(Concat(f, f)))) table,
    f = MatMul(inverse frequencies [1, h, 1], positions [1, 1, T]) with h = `half` (so the
    table is 2h wide, as x is): Cos|Sin(Squeeze(Transpose(f))). None if not that chain."""
    if table in caches:
        return caches[table]
    unsq = prod.get(table)
    trig = prod.get(unsq.input[0]) if unsq is not None and unsq.op_type == "Unsqueeze" else None
    if trig is None or trig.op_type not in ("Cos", "Sin"):
        return None
    transpose = prod.get(trig.input[0])
    concat = (
        prod.get(transpose.input[0]) if transpose and transpose.op_type == "Transpose" else None
    )
    perm = [list(a.ints) for a in transpose.attribute if a.name == "perm"] if transpose else []
    if concat is None or concat.op_type != "Concat" or perm != [[0, 2, 1]]:
        return None
    if len(concat.input) != 2 or concat.input[0] != concat.input[1]:
        return None
    axis = next((a.i for a in concat.attribute if a.name == "axis"), None)
    if axis != 1:
        return None
    f, stem = concat.input[0], f"rotary_{len(caches)}"
    freqs = prod.get(f)
    inverse = (
        G.constant(freqs.input[0], inits, prod) if freqs and freqs.op_type == "MatMul" else None
    )
    if inverse is None or inverse.shape != (1, half, 1):
        return None
    new_nodes += [
        helper.make_node("Transpose", [f], [stem + "_t"], perm=[0, 2, 1]),
        helper.make_node("Squeeze", [stem + "_t", "rotary_axis0"], [stem + "_f"]),
        helper.make_node(trig.op_type, [stem + "_f"], [stem + "_cache"]),
    ]
    caches[table] = stem + "_cache"
    return caches[table]


def _positions(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """rotary_position_ids [batch, tokens] = 0..tokens-1 in every row, from input_ids' shape."""
    model.graph.initializer.extend(
        [
            helper.make_tensor("rotary_axis0", onnx.TensorProto.INT64, [1], [0]),
            helper.make_tensor("rotary_zero", onnx.TensorProto.INT64, [], [0]),
            helper.make_tensor("rotary_one", onnx.TensorProto.INT64, [], [1]),
        ]
    )
    return [
        helper.make_node("Shape", ["input_ids"], ["rotary_shape"]),
        helper.make_node("Gather", ["rotary_shape", "rotary_one"], ["rotary_tokens"], axis=0),
        helper.make_node("Range", ["rotary_zero", "rotary_tokens", "rotary_one"], ["rotary_pos"]),
        helper.make_node("Unsqueeze", ["rotary_pos", "rotary_axis0"], ["rotary_pos_row"]),
        helper.make_node("Expand", ["rotary_pos_row", "rotary_shape"], ["rotary_position_ids"]),
    ]
