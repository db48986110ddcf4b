"""Symbolic shape and value propagation over an ONNX graph, for the shape fold in `shapes`.

Why: the fold in `shapes` rewrites a Reshape, Expand or Slice only where it can prove an
identity for every batch size and sequence length, so it needs each tensor's shape as sympy
expressions of the inputs' dims (taken >= 1; a dim it cannot derive gets a fresh symbol) and
the values of small integer tensors, symbolic ones included. `Facts` computes both in one pass
over the graph's nodes; the per-op rules live here, the rewrites that use them in `shapes`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import sympy as sp
from onnx import TensorProto as T
from onnx import helper, numpy_helper

Dims = tuple[sp.Expr, ...]
ONE, END = sp.Integer(1), 2**62  # a Slice end from END on means "to the end of the axis"
MAX_VALUE = 64  # integer tensors of up to this many elements have their values tracked
INTS = {T.INT8, T.INT16, T.INT32, T.INT64, T.UINT8, T.UINT16, T.UINT32, T.UINT64, T.BOOL}
SAME = {"Neg", "Abs", "Cast", "Sin", "Cos", "Sqrt", "Exp", "Erf", "Tanh", "Sigmoid", "Not",
        "IsNaN", "Identity", "Softmax", "FastGelu", "Gelu", "Clip", "QuantizeLinear",
        "DequantizeLinear", "LayerNormalization", "SimplifiedLayerNormalization",
        "SkipSimplifiedLayerNormalization", "SkipLayerNormalization"}  # fmt: skip
BOOLS = {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Not"}
BROADCAST = BOOLS - {"Not"} | {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Where",
                               "BitwiseAnd", "BitwiseOr", "BitShift"}
MATMULS = {"MatMul", "FusedMatMul", "MatMulIntegerToFloat", "DynamicQuantizeMatMul"}
REDUCES = {"Squeeze", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceL2"}
MOVES = {"Identity", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Expand", "Cast"}


def _truth(b: bool | None) -> sp.Expr | None:
    return None if b is None else sp.Integer(b)


def _div(a: sp.Expr, b: sp.Expr) -> sp.Expr | None:  # integer Div truncates towards zero
    if b.is_Integer and b > 0 and a.is_nonnegative:
        return sp.floor(a / b)
    if a.is_Integer and b.is_Integer and b != 0:
        return sp.Integer(abs(int(a)) // abs(int(b)) * (-1 if a * b < 0 else 1))
    return None


VALUE_OPS: dict[str, Callable[..., sp.Expr | None]] = {
    "Add": lambda a, b: a + b, "Sub": lambda a, b: a - b, "Mul": lambda a, b: a * b,
    "Div": _div, "Neg": lambda a: -a, "Max": sp.Max, "Min": sp.Min,
    "Equal": lambda a, b: _truth((a - b).is_zero), "Less": lambda a, b: _truth((a - b).is_negative),
    "Greater": lambda a, b: _truth((a - b).is_positive),
    "Where": lambda c, a, b: (a if c else b) if c.is_Integer else None,
    **{op: lambda a: a for op in MOVES},
}  # fmt: skip


def eq(a: sp.Expr, b: sp.Expr) -> bool:
    return bool(sp.expand(a - b).is_zero)


def _fresh() -> sp.Expr:
    return sp.Dummy("d", integer=True, nonnegative=True)


def _bcast(*shapes: Dims) -> Dims:
    out: list[sp.Expr] = []
    for i in range(1, max(map(len, shapes)) + 1):
        dims = [s[-i] for s in shapes if len(s) >= i and s[-i] != 1]
        known = [d for d in dims if d.is_Integer]  # the others must be 1 or equal to it
        same = bool(dims) and all(eq(d, dims[0]) for d in dims)
        out.insert(0, known[0] if known else dims[0] if same else _fresh() if dims else ONE)
    return tuple(out)


def _input_dim(d: onnx.TensorShapeProto.Dimension) -> sp.Expr:
    if d.HasField("dim_value"):
        return sp.Integer(d.dim_value)
    return sp.Symbol(d.dim_param, integer=True, positive=True) if d.dim_param else _fresh()


def _clamp(v: sp.Expr, d: sp.Expr) -> sp.Expr:
    """A Slice start or end (step 1) on an axis of length d, clamped as ONNX does."""
    if v.is_Integer and v >= END:
        return d
    if not (v.is_nonnegative or v.is_negative):
        raise ValueError("sign unknown")
    return sp.Min(sp.Max(v + d, 0) if v.is_negative else v, d)


def node_attrs(n: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in n.attribute}


class Facts:
    """Shapes (sympy dims) of a graph's tensors and the values of its small integer tensors."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.shape: dict[str, Dims] = {}
        self.value: dict[str, tuple[int, list[sp.Expr]]] = {}  # element type, flat values
        self.elem: dict[str, int] = {}
        for i in model.graph.input:
            if i.type.tensor_type.HasField("shape"):
                self.shape[i.name] = tuple(map(_input_dim, i.type.tensor_type.shape.dim))
        for t in model.graph.initializer:
            self._constant(t.name, t)
        for n in model.graph.node:
            try:
                if n.op_type == "Constant":
                    self._constant(n.output[0], node_attrs(n)["value"])
                    continue
                shapes = zip(n.output, self._shapes(n, node_attrs(n)), strict=False)
                self.shape.update((o, s) for o, s in shapes if o and s is not None)
                if all(d.is_Integer for o in n.output for d in self.shape[o]):
                    self._values(n, node_attrs(n))
            except (KeyError, IndexError, ValueError, TypeError, ZeroDivisionError):
                continue  # an op or input facts unknown here: its outputs stay unknown

    def _constant(self, name: str, t: T) -> None:
        self.shape[name], self.elem[name] = tuple(map(sp.Integer, t.dims)), t.data_type
        if t.data_type in INTS and np.prod(t.dims) <= MAX_VALUE:
            flat = numpy_helper.to_array(t).reshape(-1).tolist()
            self.value[name] = (t.data_type, [sp.Integer(int(v)) for v in flat])

    def ints(self, name: str) -> list[int]:
        """The concrete value of a tensor (raises KeyError or ValueError if not known)."""
        if not all(v.is_Integer for v in self.value[name][1]):
            raise ValueError(name)
        return [int(v) for v in self.value[name][1]]

    def opt(self, n: onnx.NodeProto, i: int) -> list[int] | None:
        return self.ints(n.input[i]) if len(n.input) > i and n.input[i] else None

    def _shapes(self, n: onnx.NodeProto, a: dict[str, Any]) -> list[Dims | None]:
        op, s, ins = n.op_type, self.shape, n.input
        x = s[ins[0]] if ins and ins[0] else ()
        axis, v = a.get("axis", 0) % max(len(x), 1), self.value.get(ins[-1], (0, []))[1]
        if op in SAME:
            return [x, None, None, x]  # Skip*Normalization: output 3 is the sum
        if op in BROADCAST:
            return [_bcast(*(s[i] for i in ins if i))]
        if op in MATMULS:
            y = s[ins[1]][:-2] + s[ins[1]][:-3:-1] if a.get("transB") else s[ins[1]]
            x = x[:-2] + x[:-3:-1] if a.get("transA") else x
            return [(*_bcast(x[:-2], y[:-2]), x[-2], y[-1]) if len(y) > 1 else x[:-1]]
        if op == "MatMulNBits":
            return [(*x[:-1], sp.Integer(a["N"]))]
        if op == "Transpose":
            return [tuple(x[p] for p in a.get("perm", range(len(x))[::-1]))]
        if op == "Reshape":  # a target dim that may be 0 at run time: unknown
            if any(d.is_zero is not False for d in v if not d.is_Integer) or a.get("allowzero"):
                return [None]
            out = [x[i] if d == 0 else d for i, d in enumerate(v)]
            rest = sp.Mul(*x) / sp.Mul(*(d for d in out if d != -1))
            return [tuple(rest if d == -1 else d for d in out)]
        if op == "Unsqueeze":
            axes = self.opt(n, 1) or a["axes"]
            rank, dims = len(x) + len(axes), iter(x)
            return [
                tuple(ONE if i in [j % rank for j in axes] else next(dims) for i in range(rank))
            ]
        if op in REDUCES:
            axes = self.opt(n, 1) or a.get("axes")
            axes = [
                i % len(x) for i in axes or ([] if a.get("noop_with_empty_axes") else range(len(x)))
            ]
            if op == "Squeeze" and not all(x[i] == 1 for i in axes):
                return [None]
            keep = op != "Squeeze" and a.get("keepdims", 1)
            return [
                tuple(ONE if i in axes else d for i, d in enumerate(x) if keep or i not in axes)
            ]
        if op == "Concat":
            axis = a["axis"] % len(x)
            return [(*x[:axis], sum(s[i][axis] for i in ins), *x[axis + 1 :])]
        if op == "Split":
            sizes = self.opt(n, 1) or a["split"]
            return [(*x[:axis], sp.Integer(k), *x[axis + 1 :]) for k in sizes]
        if op == "Gather":
            return [(*x[:axis], *s[ins[1]], *x[axis + 1 :])]
        if op == "Slice":
            out, starts, ends = list(x), self.value[ins[1]][1], self.value[ins[2]][1]
            axes, steps = self.opt(n, 3) or range(len(x)), self.opt(n, 4) or [1] * len(starts)
            for ax, b, e, step in zip(axes, starts, ends, steps, strict=False):
                d = x[ax]
                out[ax] = sp.Max(0, _clamp(e, d) - _clamp(b, d)) if step == 1 else _fresh()
            return [tuple(out)]
        if op == "GatherBlockQuantized" and not a.get("gather_axis"):  # uint8: 8 // bits a byte
            last = x[-1] * (8 // a["bits"] if self.elem[ins[0]] == T.UINT8 else 1)
            return [(*s[ins[1]], *x[1:-1], last)]
        if op in ("Expand", "ConstantOfShape"):
            return [_bcast(x, tuple(v)) if op == "Expand" else tuple(v)]
        if op == "Range":
            start, limit, delta = (self.value[i][1][0] for i in ins)
            return [(sp.Max(0, sp.ceiling((limit - start) / delta)),)]
        if op == "Shape":
            self.value[n.output[0]] = (T.INT64, list(x[a.get("start", 0) : a.get("end")]))
            return [(sp.Integer(len(x[a.get("start", 0) : a.get("end")])),)]
        if op == "Flatten":
            axis = a.get("axis", 1) % (len(x) + 1)
            return [(sp.Mul(*x[:axis]), sp.Mul(*x[axis:]))]
        if op == "Attention" and n.domain in ("", "ai.onnx") and len(x) == 4:
            return [(*x[:-1], s[ins[2]][-1])]  # [batch, heads, tokens, v head size]
        return []

    def _values(self, n: onnx.NodeProto, a: dict[str, Any]) -> None:
        op, ins, out = n.op_type, n.input, n.output[0]
        data = [self.value[i][1] for i in ins if i]
        elem = a["to"] if op == "Cast" else self.value[ins[op == "Where"]][0]
        elem = T.BOOL if op in BOOLS else elem
        size, rank1 = int(np.prod([int(d) for d in self.shape[out]])), len(self.shape[ins[0]]) == 1
        vals: list[sp.Expr | None] = []
        if op == "Gather" and rank1:
            vals = [data[0][i] for i in self.ints(ins[1])]
        elif op == "Concat" and rank1:
            vals = [v for vs in data for v in vs]
        elif op == "ConstantOfShape":
            elem, fill = a["value"].data_type, numpy_helper.to_array(a["value"]).reshape(-1)[0]
            vals = [sp.Integer(int(fill))] * size
        elif op == "Slice" and rank1:
            step = (self.opt(n, 4) or [1])[0]
            vals = data[0][self.ints(ins[1])[0] : self.ints(ins[2])[0] : step]
        elif op == "Split" and rank1:
            ends = np.cumsum([int(self.shape[o][0]) for o in n.output])
            for o, stop, start in zip(n.output, ends, [0, *ends], strict=False):
                self.value[o] = (elem, data[0][start:stop])
        elif op in VALUE_OPS and not (op == "Cast" and elem == T.BOOL):
            args = data[:1] if op in MOVES else data
            if all(len(v) in (1, size) for v in args):
                vals = [VALUE_OPS[op](*(v[i % len(v)] for v in args)) for i in range(size)]
        if elem in INTS and len(vals) == size and all(v is not None for v in vals):
            self.value[out] = (elem, vals)
