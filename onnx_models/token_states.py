"""The `token_states` output: every token's contextual state through the Dense head.

The sentence-transformers pipeline is transformer -> mean pooling -> Dense -> Dense ->
normalise, and both Dense layers are linear without bias, so for any set of tokens S

    head(mean_{t in S} x_t) = mean_{t in S} head(x_t).

A graph that also returns head(x_t) for every token therefore lets the runtime pool *any*
span of a text and normalise it: late chunking (`embgemma_plugins/late.py`) pools each
chunk's tokens out of one pass over the whole document, and pooling all of a text's
tokens gives its sentence vector again (the check that this output is right).

`add_token_states` applies the head's chain of weight MatMuls (one after
`fold_dense_head`, two without it) to the transformer's token output, reading the same
weight initializers, and adds the result as a graph output [batch, tokens, 768]. Padded
positions hold garbage: the runtime reads only the tokens its attention mask marks.
A recipe asks for it by listing `token_states` in its `outputs`.
"""

from __future__ import annotations

import onnx
from onnx import helper, numpy_helper

from embgemma_plugins.session import TOKEN_STATES

from . import graph as G

TOKEN_EMBEDDINGS = "token_embeddings"  # the Optimum export's transformer output (normed)


def head_chain(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The Dense head's weight MatMuls, first to last: walking back from the sentence
    output over the normalisation (Div by the expanded, clipped L2 norm) to the MatMuls."""
    prod, inits = G.producers(model), G.initializers(model)
    node = prod.get(G.SENTENCE_OUTPUT)
    while node is not None and node.op_type == "Div":  # x / expand(clip(norm(x)))
        node = prod.get(node.input[0])
    chain: list[onnx.NodeProto] = []
    while node is not None and node.op_type == "MatMul" and node.input[1] in inits:
        chain.insert(0, node)
        node = prod.get(node.input[0])
    if not chain:
        raise ValueError(f"no Dense head MatMul found before '{G.SENTENCE_OUTPUT}'")
    return chain


def add_token_states(model: onnx.ModelProto, source: str = TOKEN_EMBEDDINGS) -> None:
    """Add the graph output `token_states` = head(`source`) (see the module docstring)."""
    if any(o.name == TOKEN_STATES for o in model.graph.output):
        return
    if source not in G.producers(model):
        raise ValueError(f"the graph has no '{source}' tensor (the transformer's token output)")
    chain = head_chain(model)
    current = source
    for step, matmul in enumerate(chain):
        out = TOKEN_STATES if step == len(chain) - 1 else f"{matmul.output[0]}_tokens"
        model.graph.node.append(
            helper.make_node(
                "MatMul", [current, matmul.input[1]], [out], name=f"{matmul.name}_tokens"
            )
        )
        current = out
    width = G.initializers(model)[chain[-1].input[1]].dims[1]
    model.graph.output.append(
        helper.make_tensor_value_info(
            TOKEN_STATES, onnx.TensorProto.FLOAT, ["batch_size", "sequence_length", width]
        )
    )


def share_head_weights(model: onnx.ModelProto) -> int:
    """Point the token head's quantised weights at the sentence head's where they are equal.

    A recipe that stores the head quantised (int4's 8-bit blocks) quantises the token
    MatMul by the same rule (its name matches the head's pattern) into a second, identical
    set of initializers. Run after quantisation: each input of a ``*_tokens`` node after the
    first (the activation) that equals its twin's initializer is read from the twin's, and
    the copy is pruned. Returns the inputs shared."""
    inits = G.initializers(model)
    nodes = {n.name: n for n in model.graph.node}
    shared = 0
    for node in model.graph.node:
        twin = nodes.get(node.name.replace("_tokens", "", 1)) if "_tokens" in node.name else None
        if twin is None or twin.op_type != node.op_type or twin is node:
            continue
        for j in range(1, min(len(node.input), len(twin.input))):
            mine, theirs = node.input[j], twin.input[j]
            if mine != theirs and mine in inits and theirs in inits and _same(inits[mine],
                                                                              inits[theirs]):
                node.input[j] = theirs
                shared += 1
    if shared:
        G.prune(model)
    return shared


def _same(a: onnx.TensorProto, b: onnx.TensorProto) -> bool:
    x, y = numpy_helper.to_array(a), numpy_helper.to_array(b)
    return x.dtype == y.dtype and x.shape == y.shape and bool((x == y).all())
