"""Fold the run-time shape arithmetic the PyTorch exporter leaves in the graph.

Why: the export computes every Reshape, Expand and Slice target at run time from Shape ->
Gather -> Unsqueeze -> Concat (-> Equal -> Where) chains over the dynamic [batch, sequence]
dims, again in each of the 24 layers: half the int8 graph's nodes and ~30% of ONNX Runtime's
kernel time on a short query. Those values are functions of two symbols, so `lean_shapes`
proves them once, at build time, from the shapes and values `shapeinfer.Facts` propagates.
Then a tensor whose value is a number becomes a constant, tensors of one symbolic value become
the first of them, a Reshape/Expand/Slice whose output shape provably equals its input's is
dropped, the run-time target of another Reshape or Expand becomes a constant (Reshape: 0 =
copy this dim, at most one -1; Expand: 1 where it keeps the input's dim), identical nodes are
merged and dead ones pruned, until nothing changes. Each rewrite rests on an identity that
holds for every batch size and sequence length; what needs the sequence length itself
(positions, rotary tables, masks) stays, computed once."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import onnx
import sympy as sp
from onnx import helper, numpy_helper

from . import graph as G
from .shapeinfer import ONE, Dims, Facts, eq, node_attrs


def _target(n: onnx.NodeProto, v: list[sp.Expr], x: Dims) -> list[int] | None:
    """A constant for the run-time target `v` of a Reshape or Expand of a tensor of shape x."""
    if n.op_type == "Reshape" and not node_attrs(n).get("allowzero"):
        out = [int(t) if t.is_Integer else 0 if i < len(x) and eq(t, x[i]) else -1
               for i, t in enumerate(v)]  # fmt: skip
        others = [x[i] if d == 0 else sp.Integer(d) for i, d in enumerate(out) if d != -1]
        if out.count(-1) < 2 and (-1 not in out or all(d.is_positive for d in others)):
            return out
    if n.op_type == "Expand":
        lead = len(v) - len(x)
        dims = [ONE if i >= lead and eq(t, x[i - lead]) else t for i, t in enumerate(v)]
        if all(d.is_Integer for d in dims):
            return [int(d) for d in dims]
    return None


def lean_shapes(model: onnx.ModelProto) -> int:
    """Fold the run-time shape arithmetic of `model` in place (see the module docstring).
    Returns the number of nodes removed."""
    before = len(model.graph.node)
    for _ in range(16):  # a round can expose more (a constant feeds the next fold)
        if not _fold(model):
            break
    return before - len(model.graph.node)


def _fold(model: onnx.ModelProto) -> bool:
    """One round: rewrite what the facts prove, merge identical nodes, prune. True if changed."""
    g, f, prod = model.graph, Facts(model), G.producers(model)
    keep, names = {o.name for o in g.output}, {t.name for t in g.initializer}
    inputs = {i.name for i in g.input}
    rename: dict[str, str] = {}
    first: dict[Any, str] = {}
    edits, count = 0, len(g.node)

    def constant(arr: np.ndarray) -> str:
        digest = hashlib.sha1(f"{arr.dtype}{arr.shape}".encode() + arr.tobytes()).hexdigest()
        name = f"lean_{digest[:16]}"
        if name not in names:
            g.initializer.append(numpy_helper.from_array(arr, name))
            names.add(name)
        return name

    for t in list(g.initializer):  # small integer constants by content, so equal ones merge
        if t.name in f.value and t.name not in inputs:
            rename[t.name] = constant(numpy_helper.to_array(t))
    for n in g.node:
        valued = [o for o in n.output if o in f.value and o not in keep]
        for o in valued:  # a number becomes a constant, a symbolic value its first tensor
            elem, vals = f.value[o]
            if all(v.is_Integer for v in vals):
                arr = np.array([int(v) for v in vals], helper.tensor_dtype_to_np_dtype(elem))
                rename[o] = constant(arr.reshape([int(d) for d in f.shape[o]]))
            else:
                rename[o] = first.setdefault((elem, f.shape[o], tuple(vals)), o)
        if valued or n.op_type not in ("Reshape", "Expand", "Slice"):
            continue
        try:
            src, v = prod.get(n.input[0]), f.value.get(n.input[1], (0, [ONE * 0]))[1]
            copies = not all(d == -1 or d.is_positive for d in v)  # a 0 copies a data dim
            if src is not None and n.op_type == src.op_type == "Reshape" and not copies:
                n.input[0], edits = src.input[0], edits + 1  # a Reshape of a Reshape: skip one
            x, y, steps = f.shape[n.input[0]], f.shape[n.output[0]], f.opt(n, 4) or [1]
            noop = len(x) == len(y) and all(map(eq, x, y)) and set(steps) == {1}
            if noop and n.output[0] not in keep:
                rename[n.output[0]] = n.input[0]
                continue
            target = None if n.op_type == "Slice" else _target(n, v, x)
            if target is not None:
                name = constant(np.array(target, np.int64))
                edits, n.input[1] = edits + (n.input[1] != name), name
        except (KeyError, ValueError, IndexError):
            continue
    seen: dict[Any, onnx.NodeProto] = {}
    for n in g.node:
        for k, name in enumerate(n.input):
            while rename.get(name, name) != name:
                name = rename[name]
            edits, n.input[k] = edits + (n.input[k] != name), name
        if any(o in keep for o in n.output) or n.op_type.startswith("Random"):
            continue
        attrs = tuple(sorted(a.SerializeToString() for a in n.attribute))
        key = (n.domain, n.op_type, tuple(n.input), tuple(map(bool, n.output)), attrs)
        if seen.setdefault(key, n) is not n:  # an identical earlier node: use its outputs
            rename.update(zip(n.output, seen[key].output, strict=True))
    G.prune(model)
    return edits > 0 or len(g.node) < count
