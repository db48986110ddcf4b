"""Length-sorted token-budget batches; a vector never depends on its batch-mates."""

from __future__ import annotations

import numpy as np
import pytest

from embgemma_plugins import EmbeddingGemma
from embgemma_plugins.batching import plan_batches
from embgemma_plugins.errors import InvalidArgumentError
from tests.texts import TEXTS


def test_plan_covers_every_index_once_within_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 700, size=500)
    batches = plan_batches(lengths, batch_tokens=2048, max_batch_size=64)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(500))
    for b in batches:
        assert len(b) <= 64
        assert len(b) * lengths[b].max() <= 2048
    widths = [lengths[b].max() for b in batches]
    assert widths == sorted(widths, reverse=True)  # longest first


def test_a_text_longer_than_the_budget_gets_its_own_batch():
    batches = plan_batches([5000, 3, 3], batch_tokens=100)
    assert [b.tolist() for b in batches] == [[0], [1, 2]]


def test_empty_plan_and_bad_budget():
    assert plan_batches([], 100) == []
    with pytest.raises(InvalidArgumentError):
        plan_batches([3], 0)


def test_vectors_do_not_depend_on_batch_mates_or_budget(tiny_model, tiny_gemma):
    alone = np.vstack([tiny_gemma.embed_documents([t]) for t in TEXTS])
    together = tiny_gemma.embed_documents(TEXTS)
    tight = EmbeddingGemma(tiny_model, batch_tokens=64).embed_documents(TEXTS)
    np.testing.assert_allclose(together, alone, atol=2e-6)
    np.testing.assert_allclose(tight, alone, atol=2e-6)


def test_input_order_is_restored(tiny_gemma):
    forward = tiny_gemma.embed_queries(TEXTS)
    backward = tiny_gemma.embed_queries(TEXTS[::-1])
    np.testing.assert_allclose(forward, backward[::-1], atol=2e-6)
