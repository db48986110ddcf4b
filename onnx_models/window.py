"""Sliding-window attention computed on its band only, in chunks of queries.

Gemma 3 attends within a window in 20 of its 24 layers (EmbeddingGemma: |i - j| < 257,
bidirectional), but the exported graph gives every layer the whole T x T score matrix
and masks the band afterwards. For a sequence longer than one chunk plus the window,
this fusion cuts the queries into chunks of `CHUNK` rows, gives each chunk only the
keys its band can reach (CHUNK + 2W of them, gathered once per layer) and runs one
`Attention` over all chunks as a batch: a 2,048-token document costs 0.28x the score
work of full attention in those layers (576 keys per query instead of 2,048), and a
single long document becomes many batch rows, which ONNX Runtime spreads over its
threads (it splits batch x heads: one row of 3 heads ran 62 GMAC/s at 838 tokens
against 90-104 with more rows, one-op graphs on a 2-core host).

Shorter sequences, where the window covers everything, take the layer's original
`Attention` unchanged: an `If` on the sequence length picks the branch, so a short
query pays no copies. The chunked branch is the same arithmetic: each query sees the
same keys under the same mask (band and key padding), softmax normalises over the same
set; only the order of the sums differs (float32 rounding). That difference must not
depend on batch mates (a short text padded past C + 2W beside a long one would take the
chunked branch it does not take alone), so the graph records C + 2W in its metadata as a
bound the runtime's batch planner never pads a text across (embgemma_plugins/batching.py).

The window is read from the graph: a sliding layer's mask has the exporter's band test
`Less(Abs(Sub(i, j)), W + 1)` upstream. Run it last (after `flat_heads`): it takes q, k
and v in [batch, tokens, heads x dim] layout as `Attention` reads them there, and
leaves 4-D (heads-first) attention alone.
"""

from __future__ import annotations

import json
from collections import deque
from typing import NamedTuple

import onnx
from onnx import TensorProto, helper

from embgemma_plugins.batching import BOUNDS_KEY

from . import graph as G
from .builder import Builder

CHUNK = 64  # query rows per chunk: 576 keys each for EmbeddingGemma's window (W = 256)
MASK_OPS = {"And", "Or", "Not", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Equal",
            "Abs", "Sub", "Add", "Unsqueeze", "Reshape", "Expand", "Cast", "Where"}


def banded_attention(model: onnx.ModelProto, chunk: int = CHUNK) -> int:
    """Give every sliding-window `Attention` a chunked branch for long inputs; returns the
    number of layers changed."""
    prod, inits = G.producers(model), G.initializers(model)
    layers = [(n, w) for n in model.graph.node if n.op_type == "Attention" and _flat(n)
              if (w := _half_window(n.input[3] if len(n.input) > 3 else "", prod, inits))]
    windows = {w for _, w in layers}
    if not layers or len(windows) > 1:
        return 0  # no sliding layer, or several windows (not Gemma 3's layout): leave as is
    shared = Builder("band")
    w = windows.pop()
    plan = _plan(shared, chunk, w)
    record_bound(model, chunk + 2 * w)  # the If's test: chunked above C + 2W tokens
    model.graph.initializer.extend(shared.consts.values())
    model.graph.node.extend(shared.nodes)
    for node, _ in layers:
        node.CopyFrom(_if(node, plan))
    G.toposort(model)
    return len(layers)


def record_bound(model: onnx.ModelProto, bound: int) -> None:
    """Add `bound` to the padded lengths the graph's metadata lists as changing its path."""
    entry = next((p for p in model.metadata_props if p.key == BOUNDS_KEY), None)
    if entry is None:
        entry = model.metadata_props.add(key=BOUNDS_KEY, value="[]")
    entry.value = json.dumps(sorted({*json.loads(entry.value), bound}))


def _flat(attention: onnx.NodeProto) -> bool:
    """Whether q/k/v are [batch, tokens, heads x dim] (the node carries its head counts)."""
    return any(a.name == "q_num_heads" for a in attention.attribute)


def _half_window(
    mask: str, prod: dict[str, onnx.NodeProto], inits: dict[str, onnx.TensorProto]
) -> int | None:
    """W if `mask` is built (through mask arithmetic) from a band test |i - j| < W + 1."""
    seen, todo = set(), deque([mask])
    while todo:
        node = prod.get(todo.popleft())
        if node is None or node.output[0] in seen or node.op_type not in MASK_OPS:
            continue
        seen.add(node.output[0])  # by output: many exported nodes have no name
        if node.op_type == "Less" and getattr(prod.get(node.input[0]), "op_type", "") == "Abs":
            bound = G.scalar(node.input[1], inits, prod)
            if bound is not None and bound >= 2 and bound == int(bound):
                return int(bound) - 1
        todo.extend(node.input)
    return None


class _Plan(NamedTuple):
    """What every chunked branch reads (tensor names), computed once per run."""

    chunked: str  # the If's condition
    q_pads: str
    kv_pads: str
    windows: str  # [chunks, C + 2W]: each chunk's key rows in the padded k/v
    q_shape: str
    kv_shape: str
    mask: str  # [B x chunks, 1, C, C + 2W]
    out_shape: str
    tokens: str  # [1]: the real length, to cut the padded queries off
    zero: str  # [1]
    axis1: str  # [1]


def _plan(b: Builder, chunk: int, w: int) -> _Plan:
    """The chunking test, the window index, the pads and shapes, and the mask.

    In padded coordinates (W zero keys before the sequence), chunk c's queries are rows
    [c C, c C + C) and its keys rows [c C, c C + C + 2W); query i of the chunk and key j
    of its window are |i - j + W| apart, so the band is one [C, C + 2W] matrix for all."""
    zero, one, cq = b.c("zero", 0), b.c("one", 1), b.c("chunk", chunk)
    keys = b.c("keys", chunk + 2 * w)
    z1, w1, one1, minus1 = b.c("z1", [0]), b.c("w_1", [w]), b.c("one_1", [1]), b.c("minus1", [-1])
    axis0, axis1 = b.c("axis0", [0]), b.c("axis1", [1])
    batch, tokens = b.batch_and_tokens()
    chunked = b.op("Greater", [tokens, keys], "chunked")
    n_chunks = b.op("Div", [b.op("Add", [tokens, b.c("chunk_less_one", chunk - 1)], "t1"), cq],
                    "chunks")
    padded = b.op("Mul", [n_chunks, cq], "padded")
    starts = b.op("Mul", [b.op("Range", [zero, n_chunks, one], "c"), cq], "starts")
    j = b.op("Unsqueeze", [b.op("Range", [zero, keys, one], "j"), axis0], "j2")
    index = b.op("Add", [b.op("Unsqueeze", [starts, axis1], "starts2"), j], "index")
    i = b.op("Unsqueeze", [b.op("Range", [zero, cq, one], "i"), axis1], "i2")
    offset = b.op("Abs", [b.op("Add", [b.op("Sub", [i, j], "ij"), b.c("w", w)], "d")], "ad")
    band = b.op("Less", [offset, b.c("w1", w + 1)], "band")  # [C, C + 2W]
    tail = b.op("Sub", [padded, tokens], "tail")  # query rows added to fill the last chunk
    tail1 = b.vec(tail, "tail_1")
    right1 = b.vec(b.op("Add", [tail, b.c("w", w)], "right"), "right_1")
    batch1 = b.vec(batch, "batch_1")
    rows = b.op("Mul", [batch1, b.vec(n_chunks, "chunks_1")], "rows_1")
    keys1 = b.c("keys_1", [chunk + 2 * w])
    mask_pads = b.op("Concat", [z1, w1, z1, right1], "mask_pads", axis=0)
    valid = b.op("Gather", [b.op("Pad", ["attention_mask", mask_pads], "mask_p"), index],
                 "mask_w", axis=1)  # [B, chunks, C + 2W]
    valid = b.op("Cast", [valid], "mask_b", to=TensorProto.BOOL)
    mask_shape = b.op("Concat", [rows, one1, one1, keys1], "mask_shape", axis=0)
    valid = b.op("Reshape", [valid, mask_shape], "valid")
    return _Plan(
        chunked=chunked,
        q_pads=b.op("Concat", [z1, z1, z1, z1, tail1, z1], "q_pads", axis=0),
        kv_pads=b.op("Concat", [z1, w1, z1, z1, right1, z1], "kv_pads", axis=0),
        windows=index,
        q_shape=b.op("Concat", [rows, b.c("chunk_1", [chunk]), minus1], "q_shape", axis=0),
        kv_shape=b.op("Concat", [rows, keys1, minus1], "kv_shape", axis=0),
        mask=b.op("And", [band, valid], "mask"),
        out_shape=b.op("Concat", [batch1, b.vec(padded, "padded_1"), minus1], "out_shape",
                       axis=0),
        tokens=b.vec(tokens, "tokens_1"),
        zero=z1,
        axis1=axis1,
    )


def _if(attention: onnx.NodeProto, plan: _Plan) -> onnx.NodeProto:
    """If(long input): chunked band attention, else: the node as it was."""
    q, k, v = attention.input[:3]
    tag = "band_" + (attention.name or attention.output[0]).strip("/").replace("/", "_")
    b = Builder(tag)
    chunks = [b.op("Reshape", [b.op("Pad", [q, plan.q_pads], "q_p"), plan.q_shape], "q")]
    for name, x in (("k", k), ("v", v)):
        window = b.op("Gather", [b.op("Pad", [x, plan.kv_pads], name + "_p"), plan.windows],
                      name + "_w", axis=1)
        chunks.append(b.op("Reshape", [window, plan.kv_shape], name))
    attrs = {a.name: helper.get_attribute_value(a) for a in attention.attribute}
    out = b.op("Attention", [*chunks, plan.mask], "chunks_out", **attrs)
    then = b.op("Slice", [b.op("Reshape", [out, plan.out_shape], "out"), plan.zero,
                          plan.tokens, plan.axis1], "then")
    return b.if_else(plan.chunked, then, attention)
