"""A text's vector never depends on its batch mates (issue 27), on the tiny model's variants.

Padding decides part of the arithmetic: the banded attention's `If` takes its chunked branch
above C + 2W tokens (66 for the tiny model: C = 64, W = 1), and ONNX Runtime's CPU
`Attention` sums wide heads in one block or two by the key count. A short text padded past
such a bound beside a long one is computed otherwise than alone: a rounding-level
difference, which a quantised variant turns into a flipped activation code now and then
(a 1e-4 to 1e-3 change of the vector). The graph records its bound, and the planner never
pads a text across one (embgemma_plugins/batching.py).
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from embgemma_plugins import EmbeddingGemma
from embgemma_plugins.batching import BOUNDS_KEY, KERNEL_BOUNDS, path_bounds, plan_batches
from embgemma_plugins.errors import InvalidArgumentError
from embgemma_plugins.onnx_models.build import build_variant
from embgemma_plugins.onnx_models.pooling import matmul_pooling
from embgemma_plugins.onnx_models.recipe import load_recipes
from embgemma_plugins.onnx_models.window import CHUNK
from embgemma_plugins.prompts import PROMPTS_FILE
from embgemma_plugins.store.resolve import TOKENIZER_FILE
from tests.test_quantize import TEXTS, tiny_int4
from tests.test_window import HALF

BAND = CHUNK + 2 * HALF  # the tiny graph's chunked branch: inputs over 66 tokens
VOCAB = 600  # the tiny SentencePiece vocabulary; ids 4.. are ordinary pieces
BUDGETS = (128, 512, 1024, 1 << 20)  # batches of 1 to 400 rows


@pytest.fixture(scope="module")
def variants(
    tiny_optimum: Path, tiny_model: Path, tokenize, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    """The tiny int8 and int4 as model folders (graph, tokenizer, prompt table)."""
    out = tmp_path_factory.mktemp("invariance")
    folders = {}
    for name, recipe in (("int8", load_recipes()["int8"]), ("int4", tiny_int4())):
        folder = out / name
        build_variant(tiny_optimum, folder / "model.onnx", recipe, TEXTS * 4, tokenize)
        for file in (TOKENIZER_FILE, PROMPTS_FILE):
            shutil.copy2(tiny_model / file, folder / file)
        folders[name] = folder
    return folders


def token_ids(count: int, lengths: tuple[int, int], seed: int) -> list[np.ndarray]:
    """`count` random token sequences (BOS ... EOS) of `lengths[0]` to `lengths[1]` tokens."""
    rng = np.random.default_rng(seed)
    return [
        np.array([2, *rng.integers(4, VOCAB, int(rng.integers(*lengths)) - 2), 1], np.int64)
        for _ in range(count)
    ]


def test_no_batch_straddles_a_bound() -> None:
    lengths = np.random.default_rng(0).integers(3, 2049, size=600)
    bounds = (64, 576)
    for budget in BUDGETS:
        batches = plan_batches(lengths, budget, bounds=bounds)
        assert sorted(np.concatenate(batches).tolist()) == list(range(600))
        for b in batches:
            sides = {int(np.searchsorted(bounds, n)) for n in lengths[b]}
            assert len(sides) == 1, (budget, lengths[b])
            assert len(b) == 1 or len(b) * lengths[b].max() <= budget
    # a bound cuts a batch the budget alone would have kept whole
    assert [b.tolist() for b in plan_batches([65, 64, 10, 577, 576], 4096)] == [[3, 4, 0, 1, 2]]
    cut = plan_batches([65, 64, 10, 577, 576], 4096, bounds=bounds)
    assert [b.tolist() for b in cut] == [[3], [4, 0], [1, 2]]


def test_bounds_come_from_the_graph_and_the_kernels() -> None:
    assert path_bounds({}) == KERNEL_BOUNDS
    assert path_bounds({BOUNDS_KEY: "[576]"}) == (*KERNEL_BOUNDS, 576)
    with pytest.raises(InvalidArgumentError, match=r"embgemma\.length_bounds.*rebuild"):
        path_bounds({BOUNDS_KEY: "576 tokens"})


def test_every_variant_records_its_band(variants, tiny_model: Path) -> None:  # type: ignore[no-untyped-def]
    for folder in (tiny_model, *variants.values()):
        graph = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        assert graph.get_modelmeta().custom_metadata_map[BOUNDS_KEY] == f"[{BAND}]"
        assert EmbeddingGemma(folder).bounds == (*KERNEL_BOUNDS, BAND)


@pytest.mark.parametrize("variant", ["int8", "int4"])
def test_quantised_vectors_do_not_depend_on_batch_mates(variants, variant: str) -> None:  # type: ignore[no-untyped-def]
    """400 texts up to the band, each alone, in every batch the planner forms of them, and
    with a mate past the band (ids chosen so that both variants flipped a code before)."""
    model = EmbeddingGemma(variants[variant])
    ids = token_ids(400, (8, BAND + 1), seed=2)
    mate = token_ids(1, (100, 101), seed=3)[0]
    alone = np.vstack([model.embed_tokens([x]) for x in ids])
    for budget in BUDGETS:
        model.batch_tokens = budget
        for name, got in (("batched", model.embed_tokens(ids)),
                          ("beside a long mate", model.embed_tokens([*ids, mate])[:-1])):
            worst = np.abs(got - alone).max(axis=1)
            assert worst.max() <= 1e-6, (budget, name, np.flatnonzero(worst > 1e-6))


def test_fp32_vectors_are_bit_for_bit_the_same_beside_long_texts(tiny_model: Path) -> None:
    """fp32 keeps every rounding difference (no codes to absorb it): short texts, batched
    among themselves, give the same bits when long documents join the call."""
    model = EmbeddingGemma(tiny_model, batch_tokens=1 << 20)  # one batch, but for the bounds
    short = token_ids(40, (8, BAND + 1), seed=4)
    long = token_ids(3, (BAND + 1, 700), seed=5)
    among_themselves = model.embed_tokens(short)
    beside_long = model.embed_tokens([*long, *short])[len(long):]
    np.testing.assert_array_equal(beside_long, among_themselves)


def test_int4_pools_each_text_by_one_matmul(variants) -> None:  # type: ignore[no-untyped-def]
    model = onnx.load(str(variants["int4"] / "model.onnx"), load_external_data=False)
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["ReduceSum"] == 1  # the token count only; the masked sum is a MatMul
    (pool,) = [n for n in model.graph.node if n.name == "pool0/MatMul"]
    assert pool.op_type == "MatMul" and pool.input[0] == "pool_rows"  # [B, 1, T] mask rows
    assert matmul_pooling(model) == 0  # nothing left to rewrite


@pytest.mark.parametrize("length", [9, 40, 130])
def test_int4_gives_a_text_the_same_bits_alone_and_in_a_batch(variants, length: int) -> None:  # type: ignore[no-untyped-def]
    """int4's head quantises the pooled row, so the pooled row must not depend on the batch
    size (ONNX Runtime's ReduceSum sums a batch of one by another path)."""
    session = ort.InferenceSession(str(variants["int4"] / "model.onnx"),
                                   providers=["CPUExecutionProvider"])

    def run(rows: list[np.ndarray]) -> np.ndarray:
        ids = np.stack(rows)  # equal lengths: no padding, only the batch size changes
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        return np.asarray(session.run(["sentence_embedding"], feed)[0])

    text, *mates = token_ids(8, (length, length + 1), seed=length)
    alone = run([text])[0]
    for size in (2, 4, 8):
        np.testing.assert_array_equal(run([text, *mates[: size - 1]])[0], alone)
