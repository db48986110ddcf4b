"""Sliding-window attention computed on its band only, in chunks of queries.

Gemma 3 attends within a window in 20 of its 24 layers (EmbeddingGemma: |i - j| < 257,
bidirectional), but the exported graph gives every layer the whole T x T score matrix
and masks the band afterwards. For a sequence longer than one chunk plus the window,
this fusion cuts the queries into chunks of `CHUNK` rows, gives each chunk only the
keys its band can reach (CHUNK + 2W of them, gathered once per layer) and runs one
`Attention` over all chunks as a batch: a 2,048-token document costs 0.28x the score
work of full attention in those layers (576 keys per query instead of 2,048), and a
single long document becomes many batch rows, which ONNX Runtime spreads over its
threads (one row of 3 heads keeps 2 threads busy only two thirds of the time).

Shorter sequences, where the window covers everything, take the layer's original
`Attention` unchanged: an `If` on the sequence length picks the branch, so a short
query pays no copies. The chunked branch is the same arithmetic: each query sees the
same keys under the same mask (band and key padding), softmax normalises over the same
set; only the order of the sums differs (float32 rounding).

The window is read from the graph: a sliding layer's mask has the exporter's band test
`Less(Abs(Sub(i, j)), W + 1)` upstream. Run it last (after `flat_heads`): it takes q, k
and v in [batch, tokens, heads x dim] layout as `Attention` reads them there, and
leaves 4-D (heads-first) attention alone.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import graph as G

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
    nodes, consts = _plan(chunk, windows.pop())
    model.graph.initializer.extend(consts)
    model.graph.node.extend(nodes)
    for node, _ in layers:
        node.CopyFrom(_if(node))
    G.toposort(model)
    return len(layers)


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
        if node is None or node.name in seen or node.op_type not in MASK_OPS:
            continue
        seen.add(node.name)
        if node.op_type == "Less" and getattr(prod.get(node.input[0]), "op_type", "") == "Abs":
            bound = G.scalar(node.input[1], inits, prod)
            if bound is not None and bound >= 2 and bound == int(bound):
                return int(bound) - 1
        todo.extend(node.input)
    return None


def _plan(chunk: int, w: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes computed once per run: the chunking test, the window index and the mask.

    In padded coordinates (W zero keys before the sequence), chunk c's queries are rows
    [c C, c C + C) and its keys rows [c C, c C + C + 2W); query i of the chunk and key j
    of its window are |i - j + W| apart, so the band is one [C, C + 2W] matrix for all."""
    nodes: list[onnx.NodeProto] = []
    consts: list[onnx.TensorProto] = []

    def c(name: str, value: object) -> str:
        consts.append(numpy_helper.from_array(np.asarray(value, dtype=np.int64), "band_" + name))
        return "band_" + name

    def op(kind: str, inputs: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(kind, inputs, ["band_" + out], name="band/" + out, **attrs))
        return "band_" + out

    def vec(name: str) -> str:  # scalar -> [1], for shapes and pads; once per name
        made = name + "_1"
        if not any(made in n.output for n in nodes):
            op("Unsqueeze", [name, c("axis0", [0])], made[len("band_"):])
        return made

    zero, one, cq, keys = c("zero", 0), c("one", 1), c("chunk", chunk), c("keys", chunk + 2 * w)
    shape = op("Shape", ["input_ids"], "shape")
    batch, tokens = op("Gather", [shape, zero], "batch"), op("Gather", [shape, one], "tokens")
    op("Greater", [tokens, keys], "chunked")  # the If's condition
    n_chunks = op("Div", [op("Add", [tokens, c("chunk_less_one", chunk - 1)], "t1"), cq], "chunks")
    padded = op("Mul", [n_chunks, cq], "padded")
    starts = op("Unsqueeze", [op("Mul", [op("Range", [zero, n_chunks, one], "c"), cq], "starts"),
                              c("axis1", [1])], "starts2")
    j = op("Unsqueeze", [op("Range", [zero, keys, one], "j"), c("axis0", [0])], "j2")
    op("Add", [starts, j], "index")  # [chunks, C + 2W]
    i = op("Unsqueeze", [op("Range", [zero, cq, one], "i"), c("axis1", [1])], "i2")
    offset = op("Abs", [op("Add", [op("Sub", [i, j], "ij"), c("w", w)], "d")], "ad")
    band = op("Less", [offset, c("w1", w + 1)], "band")  # [C, C + 2W]
    tail = op("Sub", [padded, tokens], "tail")  # query rows added to fill the last chunk
    right = op("Add", [tail, c("w", w)], "right")
    z1, w1_, right1, tail1 = c("z1", [0]), c("w_1", [w]), vec(right), vec(tail)
    rows = op("Mul", [vec(batch), vec(n_chunks)], "rows_1")
    valid = op("Gather", [op("Pad", ["attention_mask", op("Concat", [z1, w1_, z1, right1],
                                                          "mask_pads", axis=0)], "mask_p"),
                          "band_index"], "mask_w", axis=1)  # [B, chunks, C + 2W]
    keys1, minus1 = c("keys_1", [chunk + 2 * w]), c("minus1", [-1])
    valid = op("Reshape", [op("Cast", [valid], "mask_b", to=TensorProto.BOOL),
                           op("Concat", [rows, one1 := c("one_1", [1]), one1, keys1],
                              "mask_shape", axis=0)], "valid")
    op("And", [band, valid], "mask")  # [B x chunks, 1, C, C + 2W]
    op("Concat", [z1, z1, z1, z1, tail1, z1], "q_pads", axis=0)
    op("Concat", [z1, w1_, z1, z1, right1, z1], "kv_pads", axis=0)
    op("Concat", [rows, c("chunk_1", [chunk]), minus1], "q_shape", axis=0)
    op("Concat", [rows, keys1, minus1], "kv_shape", axis=0)
    op("Concat", [vec(batch), vec(padded), minus1], "out_shape", axis=0)
    vec(tokens)
    return nodes, _unique(consts)


def _unique(consts: list[onnx.TensorProto]) -> list[onnx.TensorProto]:
    return list({t.name: t for t in consts}.values())


def _if(attention: onnx.NodeProto) -> onnx.NodeProto:
    """If(long input): chunked band attention, else: the node as it was."""
    q, k, v = attention.input[:3]
    tag = "band_" + (attention.name or attention.output[0]).strip("/").replace("/", "_")
    body: list[onnx.NodeProto] = []

    def op(kind: str, inputs: list[str], out: str, **attrs: Any) -> str:
        body.append(helper.make_node(kind, inputs, [f"{tag}_{out}"], name=f"{tag}/{out}", **attrs))
        return f"{tag}_{out}"

    chunks = [op("Reshape", [op("Pad", [q, "band_q_pads"], "q_p"), "band_q_shape"], "q")]
    for name, x in (("k", k), ("v", v)):
        window = op("Gather", [op("Pad", [x, "band_kv_pads"], name + "_p"), "band_index"],
                    name + "_w", axis=1)
        chunks.append(op("Reshape", [window, "band_kv_shape"], name))
    attrs = {a.name: helper.get_attribute_value(a) for a in attention.attribute}
    out = op("Attention", [*chunks, "band_mask"], "chunks_out", **attrs)
    op("Slice", [op("Reshape", [out, "band_out_shape"], "out"), "band_z1", "band_tokens_1",
                 "band_axis1"], "then")
    plain = onnx.NodeProto()
    plain.CopyFrom(attention)
    plain.output[0] = f"{tag}_else"
    value = helper.make_tensor_value_info
    return helper.make_node(
        "If", ["band_chunked"], list(attention.output[:1]), name=f"{tag}/If",
        then_branch=helper.make_graph(body, tag + "_then", [],
                                      [value(f"{tag}_then", TensorProto.FLOAT, None)]),
        else_branch=helper.make_graph([plain], tag + "_else", [],
                                      [value(f"{tag}_else", TensorProto.FLOAT, None)]),
    )
