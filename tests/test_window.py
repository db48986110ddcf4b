"""banded_attention: sliding-window layers attend over their band in query chunks for long
inputs, and the vectors are those of full attention under the band mask."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from embgemma_plugins.onnx_models import graph as G
from embgemma_plugins.onnx_models.build import build_variant
from embgemma_plugins.onnx_models.recipe import load_recipes
from embgemma_plugins.onnx_models.window import CHUNK, _half_window, banded_attention
from tests.test_quantize import TEXTS, cosines, embed, ops, without

SLIDING_LAYERS = 2  # the tiny model's layer_types: sliding, full, sliding, full


def _half(tiny_optimum: Path) -> int:
    """W of the band |i - j| <= W, as transformers reads the exported checkpoint's config
    (the bidirectional overlay: |i - j| < sliding_window)."""
    return int(json.loads(tiny_optimum.with_name("config.json").read_text())["sliding_window"]) - 1


HALF = 1  # the tiny checkpoint's, checked against its config below


@pytest.fixture(scope="module")
def pair(tiny_optimum: Path, tokenize, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """int8 built by its recipe, and by the same recipe without banded_attention (both
    without split_queries, which wraps Attention nodes in an If of its own: test_split.py)."""
    out = tmp_path_factory.mktemp("window")
    recipe = without(load_recipes()["int8"], "split_queries")
    assert all("banded_attention" in r.fusions for r in load_recipes().values())
    plain = without(recipe, "banded_attention")
    paths = out / "banded" / "model.onnx", out / "plain" / "model.onnx"
    for path, r in zip(paths, (recipe, plain), strict=True):
        build_variant(tiny_optimum, path, r, TEXTS * 4, tokenize)
    return paths


def _ids(tokenize, length: int, rows: int = 3) -> list[list[int]]:  # type: ignore[no-untyped-def]
    """`rows` real token sequences, the first `length` tokens long, the others shorter."""
    pool = [t for seq in tokenize(TEXTS) for t in seq[1:-1]]
    assert len(pool) >= length
    return [pool[r * 7 : r * 7 + length - (length // 3) * r] for r in range(rows)]


def test_only_sliding_layers_are_wrapped(pair, tiny_optimum: Path) -> None:  # type: ignore[no-untyped-def]
    assert _half(tiny_optimum) == HALF
    banded, plain = (ops(p) for p in pair)
    assert banded["If"] == SLIDING_LAYERS and plain["If"] == 0
    assert banded["Attention"] == plain["Attention"] - SLIDING_LAYERS  # the rest: inside the If
    model = onnx.load(str(pair[0]), load_external_data=False)
    assert int(G.array(model, "band_w")) == HALF  # read off the exporter's band test
    assert int(G.array(model, "band_keys")) == CHUNK + 2 * HALF
    for node in (n for n in model.graph.node if n.op_type == "If"):
        branches = {a.name: [n.op_type for n in a.g.node] for a in node.attribute}
        assert branches["else_branch"] == ["Attention"]
        assert branches["then_branch"].count("Attention") == 1
    assert banded_attention(onnx.load(str(pair[1]), load_external_data=False), chunk=4) == 2


@pytest.mark.parametrize("length", [CHUNK + 2 * HALF - 1, CHUNK + 2 * HALF + 1, 3 * CHUNK, 200])
def test_vectors_equal_full_attention(pair, tokenize, length: int) -> None:  # type: ignore[no-untyped-def]
    # Either side of the switch to chunks, a length that fills its last chunk exactly, and
    # one that leaves it partly empty; padded rows of other lengths in the same batch.
    ids = _ids(tokenize, length)
    banded, plain = (embed(p, ids) for p in pair)
    assert np.isfinite(banded).all()
    assert cosines(banded, plain).min() >= 0.99999
    assert np.abs(banded - plain).max() < 1e-4


@pytest.mark.parametrize("chunk", [1, 3, 8])
def test_any_chunk_size_gives_the_same_vectors(pair, tokenize, tmp_path: Path, chunk: int) -> None:  # type: ignore[no-untyped-def]
    model = G.load(pair[1])
    assert banded_attention(model, chunk=chunk) == SLIDING_LAYERS
    path = tmp_path / "model.onnx"
    G.save(model, path)
    for length in (5, chunk + 2 * HALF + 1, 40):
        ids = _ids(tokenize, length, rows=2)
        assert cosines(embed(path, ids), embed(pair[1], ids)).min() >= 0.99999, length


def test_graph_without_a_band_is_left_alone(tiny_optimum: Path, tokenize, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fp32 = load_recipes()["fp32"]
    plain = without(fp32, "banded_attention", "split_queries")
    path = tmp_path / "model.onnx"
    build_variant(tiny_optimum, path, plain, None, tokenize)
    model = G.load(path)
    layers = [n for n in model.graph.node if n.op_type == "Attention"]
    prod, inits = G.producers(model), G.initializers(model)
    full = [n.input[3] for n in layers if _half_window(n.input[3], prod, inits) is None]
    assert len(full) == len(layers) - SLIDING_LAYERS
    for node in layers:  # every layer gets the full-attention mask
        node.input[3] = full[0]
    before = model.SerializeToString()
    assert banded_attention(model) == 0
    assert model.SerializeToString() == before
