"""Fuse the exported scaled-dot-product attention into one ONNX `Attention` (opset 23).

The exporter decomposes each layer's attention into
    FusedMatMul(q, k, transB, alpha=scale) -> Add(Where(mask, 0, -inf)) -> Softmax
    -> Where(IsNaN(p), 0, p) -> MatMul(., v)
and ONNX Runtime runs it node by node: the T x T scores, the float mask, the softmax, the
NaN test and its fill are each a tensor of their own (3 heads x 2048 x 2048 x 4 bytes = 50 MB
apiece for a long document), and the arena keeps that high-water mark for the rest of the
process. ONNX Runtime's `Attention` kernel takes the boolean mask as it is and holds one
score tensor. Same arithmetic: a row whose keys are all masked gives zeros in both (the
exporter's NaN fill; the kernel's own rule), so the fused graph returns the same vectors.

The exporter's copies of the single key/value head for each query head (repeat_kv) are
dropped: `Attention` shares KV heads itself (grouped-query attention).

Run it after the offline ORT pass (it matches `FusedMatMul`, which that pass creates), on
4-D [batch, heads, tokens, head_dim] q/k/v as the Gemma 3 export has them.
An execution provider without a kernel for this op (CUDA gained one after the CPU did) has
it placed on the CPU: correct, with a copy to host and back per layer."""

from __future__ import annotations

import onnx
from onnx import helper

from . import graph as G

ATTENTION_OPSET = 23  # the first opset with a standard Attention operator


def attention(model: onnx.ModelProto) -> int:
    """Replace every matched attention chain by one `Attention` node; returns the number fused.
    Raises the model's default opset to 23 when anything was fused."""
    prod, cons, inits = G.producers(model), G.consumers(model, outputs=True), G.initializers(model)
    fused = 0
    for softmax in [n for n in model.graph.node if n.op_type == "Softmax"]:
        match = _match(softmax, prod, cons, inits)
        if match is None:
            continue
        scores, pv, mask = match
        alpha = next((a.f for a in scores.attribute if a.name == "alpha"), 1.0)
        kv = []
        for repeated in (scores.input[1], pv.input[1]):
            kv.append(_unrepeated(repeated, prod, inits))
            _read_shape_before_repeat(repeated, kv[-1], cons, inits, prod)
        pv.CopyFrom(
            helper.make_node(
                "Attention",
                [scores.input[0], *kv, mask],
                [pv.output[0]],
                name=softmax.name.replace("Softmax", "Attention"),
                scale=alpha,
            )
        )
        fused += 1
    if fused:
        G.require_opset(model, ATTENTION_OPSET)
        G.prune(model)
    return fused


def _unrepeated(
    name: str, prod: dict[str, onnx.NodeProto], inits: dict[str, onnx.TensorProto]
) -> str:
    """The key/value heads before the exporter's repeat_kv, Reshape(Expand(Unsqueeze(kv, 2))),
    which copies the one KV head for each of the 3 query heads in every layer. `Attention`
    shares KV heads itself (query head h reads KV head h // (q_heads / kv_heads), the order
    repeat_kv makes), so it takes them as they are. Anything else is returned unchanged."""
    reshape = prod.get(name)
    expand = prod.get(reshape.input[0]) if reshape is not None else None
    unsqueeze = prod.get(expand.input[0]) if expand is not None else None
    if (
        reshape is None
        or reshape.op_type != "Reshape"
        or expand is None
        or expand.op_type != "Expand"
        or unsqueeze is None
        or unsqueeze.op_type != "Unsqueeze"
    ):
        return name
    if len(unsqueeze.input) > 1:
        axes = G.constant_ints(unsqueeze.input[1], inits, prod)
    else:
        axes = next((list(a.ints) for a in unsqueeze.attribute if a.name == "axes"), None)
    return unsqueeze.input[0] if axes == [2] else name


def _read_shape_before_repeat(
    repeated: str,
    kv: str,
    cons: dict[str, list[onnx.NodeProto]],
    inits: dict[str, onnx.TensorProto],
    prod: dict[str, onnx.NodeProto],
) -> None:
    """Point Shape nodes of a repeated key/value at the tensor before repeat_kv when they only
    read dims it shares (batch 0, tokens 2, head size 3; not heads 1): the exporter slices the
    mask to the key length read this way, which would keep the copy alive for its shape."""
    if kv == repeated:
        return
    whole = [  # Shape of every dim (start 0, no end)
        n
        for n in cons.get(repeated, [])
        if n.op_type == "Shape" and all(a.name == "start" and a.i == 0 for a in n.attribute)
    ]
    for shape in whole:
        users = cons.get(shape.output[0], [])
        read = [
            G.constant_ints(u.input[1], inits, prod) if u.op_type == "Gather" else None
            for u in users
        ]
        if users and all(r is not None and len(r) == 1 and r[0] in (0, 2, 3, -1, -2) for r in read):
            shape.input[0] = kv


def _match(
    softmax: onnx.NodeProto,
    prod: dict[str, onnx.NodeProto],
    cons: dict[str, list[onnx.NodeProto]],
    inits: dict[str, onnx.TensorProto],
) -> tuple[onnx.NodeProto, onnx.NodeProto, str] | None:
    """(scores FusedMatMul, probabilities @ v MatMul, mask input) of one attention, or None."""
    axis = next((a.i for a in softmax.attribute if a.name == "axis"), -1)
    add = prod.get(softmax.input[0])
    if axis not in (-1, 3) or add is None or add.op_type != "Add":
        return None
    scores = next(
        (prod[i] for i in add.input if i in prod and prod[i].op_type == "FusedMatMul"), None
    )
    if scores is None or len(cons[scores.output[0]]) != 1 or len(cons[add.output[0]]) != 1:
        return None
    attrs = {a.name: a.i for a in scores.attribute if a.name != "alpha"}
    transposed = [attrs.get(a, 0) for a in ("transA", "transB", "transBatchA", "transBatchB")]
    if transposed != [0, 1, 0, 0]:
        return None
    mask = add.input[1] if add.input[0] == scores.output[0] else add.input[0]
    pv = _probabilities_consumer(softmax, cons, prod, inits)
    if pv is None:
        return None
    where = prod.get(mask)  # Where(bool mask, 0, -inf): the kernel takes the bool directly
    if where is not None and where.op_type == "Where":
        on, off = (G.scalar(i, inits, prod) for i in where.input[1:])
        if on == 0.0 and off is not None and off <= -1e30:
            mask = where.input[0]
    return scores, pv, mask


def _probabilities_consumer(
    softmax: onnx.NodeProto,
    cons: dict[str, list[onnx.NodeProto]],
    prod: dict[str, onnx.NodeProto],
    inits: dict[str, onnx.TensorProto],
) -> onnx.NodeProto | None:
    """The MatMul(p, v) fed by the softmax, directly or through Where(IsNaN(p), 0, p)."""
    users = cons.get(softmax.output[0], [])
    probabilities = softmax.output[0]
    if sorted(u.op_type for u in users) == ["IsNaN", "Where"]:
        isnan, fill = sorted(users, key=lambda u: u.op_type)
        if (
            list(fill.input) != [isnan.output[0], fill.input[1], probabilities]
            or G.scalar(fill.input[1], inits, prod) != 0.0
        ):
            return None
        probabilities, users = fill.output[0], cons.get(fill.output[0], [])
    if len(users) != 1 or users[0].op_type != "MatMul" or users[0].input[0] != probabilities:
        return None
    return users[0]
