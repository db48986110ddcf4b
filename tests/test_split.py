"""split_queries: a batch of one attends as two stacked half-length query rows, and the
vectors are those of the unsplit graph, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from embgemma_plugins.onnx_models import graph as G
from embgemma_plugins.onnx_models.build import build_variant
from embgemma_plugins.onnx_models.recipe import load_recipes
from embgemma_plugins.onnx_models.split import MIN_TOKENS, split_queries
from tests.test_quantize import TEXTS, embed, ops, without
from tests.test_window import SLIDING_LAYERS, _ids

LAYERS = 4  # the tiny model's: sliding, full, sliding, full


@pytest.fixture(scope="module")
def pair(tiny_optimum: Path, tokenize, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """int8 built by its recipe, and by the same recipe without split_queries."""
    out = tmp_path_factory.mktemp("split")
    recipe = load_recipes()["int8"]
    # every recipe splits, after the attention passes it rewrites (matmul_pooling, int4's
    # last pass, touches the pooling only)
    assert all("split_queries" in r.fusions[-2:] for r in load_recipes().values())
    paths = out / "split" / "model.onnx", out / "plain" / "model.onnx"
    for path, r in zip(paths, (recipe, without(recipe, "split_queries")), strict=True):
        build_variant(tiny_optimum, path, r, TEXTS * 4, tokenize)
    return paths


def _branches(node: onnx.NodeProto) -> dict[str, list[str]]:
    return {a.name: [n.op_type for n in a.g.node] for a in node.attribute}


def test_every_layer_gets_a_split_branch_once(pair) -> None:  # type: ignore[no-untyped-def]
    split, plain = (ops(p) for p in pair)
    full_layers = LAYERS - SLIDING_LAYERS
    # top level: the full-attention layers' Attention now sits inside the split If
    assert plain["Attention"] == full_layers and split["Attention"] == 0
    assert split["If"] == plain["If"] + full_layers == LAYERS
    model = onnx.load(str(pair[0]), load_external_data=False)
    for node in (n for n in model.graph.node if n.op_type == "If"):
        branches = _branches(node)
        if node.name.startswith("split_"):
            assert branches["else_branch"] == ["Attention"]
            assert branches["then_branch"].count("Attention") == 1
        else:  # banded_attention's If: its short-input branch is split, its chunks are not
            assert branches["then_branch"].count("Attention") == 1
            (inner,) = next(a.g.node for a in node.attribute if a.name == "else_branch")
            assert inner.op_type == "If" and _branches(inner)["else_branch"] == ["Attention"]
    assert int(G.array(model, "split_min")) == MIN_TOKENS
    # once: a second pass finds only Attention nodes that read q inside their own graph
    assert split_queries(model) == 0


@pytest.mark.parametrize("length", [MIN_TOKENS - 1, MIN_TOKENS, MIN_TOKENS + 1, 150, 151])
def test_a_batch_of_one_gives_the_same_vectors(pair, tokenize, length: int) -> None:  # type: ignore[no-untyped-def]
    # Either side of the threshold, even and odd lengths (the halves overlap by one row),
    # and lengths where banded_attention's chunked branch takes the sliding layers.
    ids = _ids(tokenize, length, rows=1)
    assert len(ids[0]) == length
    split, plain = (embed(p, ids) for p in pair)
    assert np.isfinite(split).all()
    np.testing.assert_array_equal(split, plain)


def test_batches_of_several_are_untouched(pair, tokenize) -> None:  # type: ignore[no-untyped-def]
    ids = _ids(tokenize, 120, rows=3)  # padded rows of other lengths in the same batch
    np.testing.assert_array_equal(*(embed(p, ids) for p in pair))


def test_a_graph_without_attention_is_left_alone() -> None:
    graph = onnx.helper.make_graph([], "empty", [], [])
    model = onnx.helper.make_model(graph)
    before = model.SerializeToString()
    assert split_queries(model) == 0
    assert model.SerializeToString() == before
