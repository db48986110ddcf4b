"""Graph fusions ONNX Runtime's own optimiser misses on the Optimum Gemma 3 export.

* `fast_gelu`: the decomposed tanh GELU, 0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715*x**3))),
  nine element-wise passes, becomes one com.microsoft FastGelu (same formula).
* `skip_rms_norm`: Add(residual, y) followed by SimplifiedLayerNormalization of the sum
  becomes one com.microsoft SkipSimplifiedLayerNormalization that also returns the sum.
  Run it on a graph where ORT has already fused the RMSNorms (after the offline
  optimisation pass)."""

from __future__ import annotations

from collections.abc import Callable, Hashable

import numpy as np
import onnx
from onnx import helper

from . import graph as G

MS_DOMAIN = "com.microsoft"


def _other(node: onnx.NodeProto, name: str) -> str:
    other: str = node.input[1] if node.input[0] == name else node.input[0]
    return other


def fast_gelu(model: onnx.ModelProto) -> int:
    """Fuse every decomposed tanh-GELU into FastGelu; returns the number fused."""
    prod, cons, inits = G.producers(model), G.consumers(model), G.initializers(model)
    drop: set[str] = set()
    fused = 0

    def near(name: str | None, value: float) -> bool:
        got = None if name is None else G.scalar(name, inits, prod)
        return got is not None and abs(got - value) <= 1e-3 * abs(value)

    for tanh in [n for n in model.graph.node if n.op_type == "Tanh"]:
        try:
            scale = prod[tanh.input[0]]  # Mul(sqrt(2/pi), inner)
            inner_name = next(i for i in scale.input if not near(i, 0.7978845608))
            inner = prod[inner_name]  # Add(x, Mul(0.044715, x**3))
            cubic = next(
                prod[i]
                for i in inner.input
                if i in prod
                and prod[i].op_type == "Mul"
                and any(near(j, 0.044715) for j in prod[i].input)
            )
            x = _other(inner, cubic.output[0])
            one_plus = cons[tanh.output[0]][0]  # Add(1, tanh)
            times_x = cons[one_plus.output[0]][0]  # Mul(x, 1 + tanh)
            half = cons[times_x.output[0]][0]  # Mul(0.5, ...)
        except (KeyError, StopIteration, IndexError):
            continue
        ok = (
            scale.op_type == "Mul"
            and near(
                scale.input[0] if scale.input[1] == inner_name else scale.input[1], 0.7978845608
            )
            and inner.op_type == "Add"
            and one_plus.op_type == "Add"
            and near(_other(one_plus, tanh.output[0]), 1.0)
            and times_x.op_type == "Mul"
            and _other(times_x, one_plus.output[0]) == x
            and half.op_type == "Mul"
            and near(_other(half, times_x.output[0]), 0.5)
            and len(cons[tanh.output[0]])
            == len(cons[one_plus.output[0]])
            == len(cons[times_x.output[0]])
            == 1
        )
        if not ok:
            continue
        cube = _cube_nodes(cubic, x, prod, lambda i: G.scalar(i, inits, prod))
        if cube is None:
            continue
        chain = [cubic, scale, inner, tanh, one_plus, times_x, *cube]
        if any(len(cons[n.output[0]]) != 1 for n in chain if n is not times_x):
            continue
        drop.update(n.output[0] for n in chain)
        half.CopyFrom(
            helper.make_node(
                "FastGelu", [x], [half.output[0]], name=half.name + "/FastGelu", domain=MS_DOMAIN
            )
        )
        fused += 1
    keep = [n for n in model.graph.node if n.output[0] not in drop]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    G.ensure_ms_domain(model)
    G.prune(model)
    return fused


def _cube_nodes(
    cubic: onnx.NodeProto,
    x: str,
    prod: dict[str, onnx.NodeProto],
    const: Callable[[str], float | None],
) -> list[onnx.NodeProto] | None:
    """The nodes computing x**3 in `cubic` = Mul(0.044715, x**3): Pow(x, 3) or x*(x*x)."""
    cube_out = next((i for i in cubic.input if const(i) is None), None)
    node = prod.get(cube_out or "")
    if node is None:
        return None
    if node.op_type == "Pow" and node.input[0] == x:
        return [node] if const(node.input[1]) == 3.0 else None
    if node.op_type != "Mul" or x not in node.input:
        return None
    square = prod.get(_other(node, x))
    if square is None or square.op_type != "Mul" or list(square.input) != [x, x]:
        return None
    return [node, square]


def skip_rms_norm(model: onnx.ModelProto) -> int:
    """Fuse Add + SimplifiedLayerNormalization into SkipSimplifiedLayerNormalization."""
    prod = G.producers(model)
    outputs = {o.name for o in model.graph.output}
    fused = 0
    for norm in [n for n in model.graph.node if n.op_type == "SimplifiedLayerNormalization"]:
        add = prod.get(norm.input[0])
        if add is None or add.op_type != "Add" or len(norm.output) > 1 or add.output[0] in outputs:
            continue
        axis = next((a.i for a in norm.attribute if a.name == "axis"), -1)
        eps = next((a.f for a in norm.attribute if a.name == "epsilon"), 1e-5)
        if axis != -1 or any(i in G.initializers(model) for i in add.input):
            continue
        fusedn = helper.make_node(
            "SkipSimplifiedLayerNormalization",
            [add.input[0], add.input[1], norm.input[1]],
            [norm.output[0], "", "", add.output[0]],
            name=norm.name + "/SkipFusion",
            domain=MS_DOMAIN,
            epsilon=eps,
        )
        norm.CopyFrom(fusedn)
        model.graph.node.remove(add)
        fused += 1
    if fused:
        G.toposort(model)
        G.ensure_ms_domain(model)
    return fused


def gelu_reference(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x**3)))
    return out


def merge_matmuls(model: onnx.ModelProto, rule_of: Callable[[str], Hashable | None]) -> int:
    """Merge weight MatMuls that read the same input under the same rule (q/k/v; gate/up) into
    one MatMul of the concatenated weights and a Split: one GEMM of N = 1280 instead of three
    (two of N = 256, which use the cores poorly) and, for per-row int8, one row-scale pass.
    Exact: each output column is computed as before. Returns the number of MatMuls removed."""
    groups: dict[tuple[str, Hashable], list[onnx.NodeProto]] = {}
    for node in G.weight_matmuls(model):
        rule = rule_of(node.name)
        if rule is not None:
            groups.setdefault((node.input[0], rule), []).append(node)
    merged = 0
    for nodes in (g for g in groups.values() if len(g) > 1):
        weights = [G.array(model, n.input[1]) for n in nodes]
        name = nodes[0].input[1] + "_merged"
        model.graph.initializer.append(
            onnx.numpy_helper.from_array(np.concatenate(weights, axis=1), name)
        )
        out = nodes[0].output[0] + "_merged"
        sizes = onnx.numpy_helper.from_array(
            np.array([w.shape[1] for w in weights], np.int64), name + "_split"
        )
        model.graph.initializer.append(sizes)
        first = nodes[0]
        split = helper.make_node(
            "Split",
            [out, sizes.name],
            [n.output[0] for n in nodes],
            name=first.name + "_split",
            axis=-1,
        )
        for n in nodes[1:]:
            model.graph.node.remove(n)
        position = list(model.graph.node).index(first)
        first.output[0], first.input[1] = out, name
        first.name += "_merged"
        model.graph.node.insert(position + 1, split)
        merged += len(nodes) - 1
    G.prune(model)
    return merged
