"""Small ONNX graph helpers shared by the quantisation recipes (no ONNX Runtime needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

SENTENCE_OUTPUT = "sentence_embedding"


def load(path: Path) -> onnx.ModelProto:
    """Load a model with its external data (if any) in memory."""
    return onnx.load(str(path), load_external_data=True)


def save(model: onnx.ModelProto, path: Path) -> None:
    """Save a model with all weights in one external data file beside it (`<name>.data`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = path.with_name(path.name + ".data")
    if data.exists():
        data.unlink()
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data.name,
        size_threshold=1024,
    )
    if data.exists():  # onnx creates it owner-only; give it the model file's permissions
        data.chmod(path.stat().st_mode & 0o777)


def initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in model.graph.initializer}


def producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output}


GRAPH_OUTPUT = "GraphOutput"  # op_type of the stand-in user `consumers` gives a graph output


def consumers(model: onnx.ModelProto, outputs: bool = False) -> dict[str, list[onnx.NodeProto]]:
    """The nodes reading each tensor; with `outputs`, a graph output counts as one more user
    (a stand-in node of op_type GRAPH_OUTPUT), so a rewrite that needs a tensor's only user
    never takes one the graph also returns."""
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    for o in model.graph.output if outputs else ():
        out.setdefault(o.name, []).append(onnx.NodeProto(op_type=GRAPH_OUTPUT))
    return out


def read_instead(cons: dict[str, list[onnx.NodeProto]], old: str, new: str) -> None:
    """Every user of tensor `old` (by `consumers`) reads `new` instead."""
    for user in cons.get(old, []):
        for j, name in enumerate(user.input):
            if name == old:
                user.input[j] = new


def constant(
    name: str, inits: dict[str, onnx.TensorProto], prod: dict[str, onnx.NodeProto]
) -> np.ndarray | None:
    """Value of a constant tensor (initializer or Constant node output), else None."""
    if name in inits:
        return numpy_helper.to_array(inits[name])
    if name in prod and prod[name].op_type == "Constant":
        return numpy_helper.to_array(prod[name].attribute[0].t)
    return None


def scalar(
    name: str, inits: dict[str, onnx.TensorProto], prod: dict[str, onnx.NodeProto]
) -> float | None:
    """Value of a one-element constant (initializer or Constant node output), else None."""
    value = constant(name, inits, prod)
    return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None


def constant_ints(
    name: str, inits: dict[str, onnx.TensorProto], prod: dict[str, onnx.NodeProto]
) -> list[int] | None:
    """Values of a constant integer tensor (initializer or Constant node output), else None."""
    value = constant(name, inits, prod)
    return (
        [int(v) for v in value.reshape(-1)]
        if value is not None and value.dtype.kind in "iu"
        else None
    )


def array(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(initializers(model)[name])


def set_array(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    """Replace an initializer's value in place (same name)."""
    for i, t in enumerate(model.graph.initializer):
        if t.name == name:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(value, name))
            return
    raise KeyError(name)


def weight_matmuls(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """MatMul nodes whose second input is a constant 2-D weight (the linear layers)."""
    inits = initializers(model)
    return [
        n
        for n in model.graph.node
        if n.op_type == "MatMul" and n.input[1] in inits and len(inits[n.input[1]].dims) == 2
    ]


def keep_outputs(model: onnx.ModelProto, names: list[str]) -> None:
    """Drop every graph output not in `names`, then remove nodes nothing needs any more."""
    keep = [o for o in model.graph.output if o.name in names]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    prune(model)


def reads(node: onnx.NodeProto) -> list[str]:
    """The tensors `node` reads: its inputs, and for a node with subgraphs (`If`) the
    enclosing graph's tensors those subgraphs use, which ONNX does not list as inputs."""
    names = [i for i in node.input if i]
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            made = {i.name for i in attr.g.initializer} | {o for n in attr.g.node for o in n.output}
            names += [i for n in attr.g.node for i in reads(n) if i not in made]
    return names


def prune(model: onnx.ModelProto) -> None:
    """Remove nodes and initializers that do not contribute to a graph output."""
    g = model.graph
    needed = {o.name for o in g.output}
    dead = [True] * len(g.node)
    for i in reversed(range(len(g.node))):
        n = g.node[i]
        if any(o in needed for o in n.output):
            dead[i] = False
            needed.update(reads(n))
    drop(g.node, dead)
    drop(g.initializer, [t.name not in needed for t in g.initializer])


def drop(items: Any, gone: list[bool]) -> None:
    """Delete the flagged items of a repeated field in place, keeping the others' order.
    Rebuilding the field instead (``del items[:]`` then ``extend``) copies every kept message,
    and protobuf keeps the old ones' memory until the model goes: for the initializers, a
    second copy of every weight (1.2 GB of the fp32 model) per rebuild."""
    for i in reversed([i for i, flag in enumerate(gone) if flag]):
        del items[i]


def fold_dense_head(model: onnx.ModelProto) -> int:
    """Fold chains MatMul(MatMul(x, W1), W2) of constant weights (the two bias-free Dense
    layers after pooling) into one MatMul(x, W1 @ W2), computed in float64. Returns folds done."""
    cons, inits = consumers(model), initializers(model)
    folded = 0
    for first in weight_matmuls(model):
        users = cons.get(first.output[0], [])
        is_output = any(o.name == first.output[0] for o in model.graph.output)
        if len(users) != 1 or is_output:
            continue
        second = users[0]
        if (
            second.op_type != "MatMul"
            or second.input[0] != first.output[0]
            or second.input[1] not in inits
        ):
            continue
        w1 = numpy_helper.to_array(inits[first.input[1]]).astype(np.float64)
        w2 = numpy_helper.to_array(inits[second.input[1]]).astype(np.float64)
        if w1.ndim != 2 or w2.ndim != 2 or w1.shape[0] * w2.shape[1] >= w1.size + w2.size:
            continue
        name = second.input[1] + "_folded"
        model.graph.initializer.append(numpy_helper.from_array((w1 @ w2).astype(np.float32), name))
        second.input[0], second.input[1] = first.input[0], name
        model.graph.node.remove(first)
        folded += 1
    prune(model)
    return folded


def toposort(model: onnx.ModelProto) -> None:
    """Reorder nodes so that each comes after the producers of its inputs."""
    g = model.graph
    ready = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    pending, ordered = list(g.node), list[onnx.NodeProto]()
    while pending:
        rest: list[onnx.NodeProto] = []
        for n in pending:
            (ordered if all(i in ready for i in reads(n)) else rest).append(n)
            if ordered and ordered[-1] is n:
                ready.update(n.output)
        if len(rest) == len(pending):
            raise ValueError("graph has a cycle or a missing input")
        pending = rest
    del g.node[:]
    g.node.extend(ordered)


def require_opset(model: onnx.ModelProto, version: int) -> None:
    """Raise the default-domain opset to at least `version` (for a standard op it introduced)."""
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, version)


def ensure_ms_domain(model: onnx.ModelProto) -> None:
    """Declare the com.microsoft opset (contrib ops of ONNX Runtime) if it is not there yet."""
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))


def dims(tensor: onnx.TensorProto) -> list[int]:
    return list(tensor.dims)
