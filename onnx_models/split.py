"""A batch of one runs its `Attention` as two half-length query rows, so both cores work.

ONNX Runtime's CPU `Attention` spreads batch x heads over its threads. EmbeddingGemma has
3 query heads, so a batch of one is 3 tasks for 2 threads: one thread idles through half
the op. `python -m benchmarks.attention` on a 2-core host: 67 GMAC/s at
1 x 512 tokens and 50 at 1 x 2048, against 129 to 138 at 2 x 512 ... 16 x 64. A batch of
one is common: the token-budget batching gives any input over half the budget a batch of
its own, so every long document runs its full-attention layers this way.

For a batch of one of at least `MIN_TOKENS` tokens, this fusion stacks the first and the
last ceil(T / 2) query rows as a batch of two (they overlap by one row when T is odd), each
against all keys (k and v copied once), and joins the two halves of the output. Each query
row meets the same keys under the same mask row, so the vectors are the same bit for bit
(the kernel's sums per row do not depend on how many rows it has). The same command, the
stored form (the `If` and its shape arithmetic included): 0.51x the time at 1 x 2048,
0.54x at 1 x 838, 0.60x at 1 x 512, 0.82x at 1 x 192, 0.91x at 1 x 128; 0.96x to 1.04x at
1 x 96 and 1.14x at 1 x 64, hence the threshold. Batches of two or more keep the node as
it was: split, they took 1.1x to 1.6x the time (an ad hoc graph that always split).

It wraps every top-level `Attention` and, inside an `If`, those that read q from outside
their branch: the short-input branch of `banded_attention`'s `If`, not its chunked branch,
which already makes many batch rows. Run it last.
"""

from __future__ import annotations

import onnx
from onnx import helper

from . import graph as G
from .builder import Builder

MIN_TOKENS = 128  # below it the split saves little or costs (1.14x at 64 tokens)
PREFIX = "split_"  # names of this fusion's nodes


def split_queries(model: onnx.ModelProto, min_tokens: int = MIN_TOKENS) -> int:
    """Give every `Attention` of a possible batch of one a two-row branch; returns how many."""
    shared = _Shared(Builder("split"), min_tokens)
    count = 0
    for graph in _graphs(model.graph):
        inner = {o for n in graph.node for o in n.output} if graph is not model.graph else set()
        for node in graph.node:
            if node.op_type == "Attention" and len(node.input) > 3 and node.input[0] not in inner:
                node.CopyFrom(_if(node, shared))
                count += 1
    if count:
        model.graph.initializer.extend(shared.b.consts.values())
        model.graph.node.extend(shared.b.nodes)
        G.toposort(model)
    return count


class _Shared:
    """What every wrapped layer reads, computed once per run from the input's shape."""

    def __init__(self, b: Builder, min_tokens: int) -> None:
        self.b = b
        batch, tokens = b.batch_and_tokens()
        single = b.op("Equal", [batch, b.c("one", 1)], "single")
        long = b.op("GreaterOrEqual", [tokens, b.c("min", min_tokens)], "long")
        self.cond = b.op("And", [single, long], "cond")
        half = b.op("Div", [b.op("Add", [tokens, b.c("one", 1)], "t1"), b.c("two", 2)], "half")
        self.half, self.tokens = b.vec(half, "half_1"), b.vec(tokens, "tokens_1")
        self.start = b.vec(b.op("Sub", [tokens, half], "start"), "start_1")  # T - h
        skip = b.op("Sub", [b.op("Add", [half, half], "h2"), tokens], "skip")  # 2h - T: 0 or 1
        one1 = b.c("one_1", [1])
        # the second half's output rows past the overlap: [1, 2h - T] to the end, axes 0, 1
        self.tail = b.op("Concat", [one1, b.vec(skip, "skip_1")], "tail", axis=0)
        self.rows = b.op("Concat", [one1, one1, self.tokens, self.tokens], "rows", axis=0)


def _graphs(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    """`graph` and, depth first, every subgraph of its `If` nodes but this fusion's own."""
    found = [graph]
    for node in graph.node:
        if node.name.startswith(PREFIX):
            continue  # already split: its branches are the two forms of one layer
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                found.extend(_graphs(attr.g))
    return found


def _if(attention: onnx.NodeProto, s: _Shared) -> onnx.NodeProto:
    """If(a batch of one, long enough): the node on two stacked half-length query rows."""
    q, k, v, mask = attention.input[:4]
    tag = PREFIX + (attention.name or attention.output[0]).strip("/").replace("/", "_")
    b, c = Builder(tag), s.b.c
    axis0, axis1, axis2 = c("axis0", [0]), c("axis1", [1]), c("axis2", [2])
    zero1, one1 = c("zero_1", [0]), c("one_1", [1])

    def halves(x: str, axis: str, name: str) -> str:
        """The first and the last h rows of `x` along `axis`, stacked along the batch."""
        return b.op("Concat", [b.op("Slice", [x, zero1, s.half, axis], name + "_a"),
                               b.op("Slice", [x, s.start, s.tokens, axis], name + "_b")],
                    name, axis=0)

    full = b.op("Expand", [mask, s.rows], "mask_full")  # one mask row per query row
    inputs = [halves(q, axis1, "q")]
    inputs += [b.op("Concat", [x, x], name, axis=0) for name, x in (("k", k), ("v", v))]
    inputs.append(halves(full, axis2, "mask"))
    attrs = {a.name: helper.get_attribute_value(a) for a in attention.attribute}
    out = b.op("Attention", inputs, "out", **attrs)  # [2, h, heads x dim]
    first = b.op("Slice", [out, zero1, one1, axis0], "out_a")
    ends = c("ends", [2, 2**62])
    second = b.op("Slice", [out, s.tail, ends, c("axes01", [0, 1])], "out_b")
    then = b.op("Concat", [first, second], "then", axis=1)
    return b.if_else(s.cond, then, attention)
