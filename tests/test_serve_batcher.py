"""The cross-request batcher in-process, on the real tiny model's session."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")

from embgemma_plugins import EmbeddingGemma
from embgemma_plugins.serve.batcher import Batcher, BatchStats, QueueFull
from embgemma_plugins.serve.errors import ApiError
from tests.serve_process import texts_of


@pytest.fixture(scope="module")
def gemma(tiny_model: Path) -> EmbeddingGemma:
    return EmbeddingGemma(tiny_model, threads=1)


def make(gemma: EmbeddingGemma, stats: list[BatchStats], **kw: float) -> Batcher:
    options = {"batch_tokens": 1024, "max_wait_s": 0.05, "max_queue_texts": 1000} | kw
    b = Batcher(gemma.embed_tokens, 768, on_batch=stats.append, **options)  # type: ignore[arg-type]
    b.start()
    return b


def encode(gemma: EmbeddingGemma, texts: list[str]) -> list[np.ndarray]:
    return gemma.tokenize(texts, gemma.prompt_for(task="document")).ids


def test_requests_share_batches_and_get_their_own_rows(gemma):
    stats: list[BatchStats] = []
    batcher = make(gemma, stats)
    requests = [texts_of(1 + i % 4, seed=i) for i in range(20)]

    async def run() -> list[np.ndarray]:
        async def one(texts: list[str]) -> np.ndarray:
            batcher.admit(len(texts))
            return await batcher.submit(encode(gemma, texts))

        return await asyncio.gather(*(one(t) for t in requests))

    try:
        results = asyncio.run(run())
    finally:
        batcher.stop()
    for texts, rows in zip(requests, results, strict=True):
        # fp32 rounds differently at other batch shapes (<= 6e-8 measured): not bit-equal
        np.testing.assert_allclose(rows, gemma.embed_documents(texts), rtol=0, atol=1e-6)
    assert sum(s.rows for s in stats) == sum(len(t) for t in requests)
    assert len(stats) < len(requests)  # batches spanned requests
    assert all(s.padded_tokens <= 1024 for s in stats)
    assert batcher.queued == 0


def test_a_text_over_the_budget_runs_alone(gemma):
    stats: list[BatchStats] = []
    batcher = make(gemma, stats, batch_tokens=64, max_wait_s=0.0)
    long_text, short = "word " * 200, "short"

    async def run() -> list[np.ndarray]:
        batcher.admit(2)
        return [await batcher.submit(encode(gemma, [short, long_text]))]

    try:
        (rows,) = asyncio.run(run())
    finally:
        batcher.stop()
    assert sorted(s.rows for s in stats) == [1, 1]
    np.testing.assert_array_equal(rows, gemma.embed_documents([short, long_text]))


def test_admission_is_bounded_and_reservations_are_returned(gemma):
    batcher = Batcher(gemma.embed_tokens, 768, 1024, 0.01, max_queue_texts=5)
    batcher.admit(3)
    with pytest.raises(QueueFull) as full:
        batcher.admit(3)
    assert full.value.retry_after >= 1
    assert batcher.queued == 3
    batcher.cancel(3)
    batcher.admit(5)
    assert batcher.queued == 5


def test_stop_finishes_queued_texts_then_refuses(gemma):
    stats: list[BatchStats] = []
    batcher = make(gemma, stats, max_wait_s=10.0, batch_tokens=10**6)  # would wait 10 s

    async def run() -> np.ndarray:
        batcher.admit(3)
        pending = batcher.submit(encode(gemma, ["a", "b", "c"]))
        threading.Thread(target=batcher.stop).start()  # stop does not wait out max_wait
        return await asyncio.wait_for(pending, 5)

    rows = asyncio.run(run())
    assert rows.shape == (3, 768)
    with pytest.raises(ApiError) as refused:
        batcher.admit(1)
    assert refused.value.status == 503


def test_a_failing_batch_fails_only_its_requests(gemma):
    """Token ids outside the vocabulary make the session itself fail (a real error)."""
    stats: list[BatchStats] = []
    batcher = make(gemma, stats, max_wait_s=0.0)
    bad = np.array([2, 10**9, 1], dtype=np.int64)

    async def run() -> tuple[object, np.ndarray]:
        batcher.admit(1)
        broken = batcher.submit([bad])
        error = await asyncio.gather(broken, return_exceptions=True)
        batcher.admit(1)
        fine = await batcher.submit(encode(gemma, ["fine"]))
        return error[0], fine

    try:
        error, fine = asyncio.run(run())
    finally:
        batcher.stop()
    assert isinstance(error, ApiError) and error.status == 500 and error.tei_status == 424
    assert error.message.startswith("the model failed: ")
    np.testing.assert_array_equal(fine, gemma.embed_documents(["fine"]))


def test_small_and_large_tokenizer_batches_give_the_same_ids(gemma):
    """Requests are tokenised a few texts at a time, which the tokenizer does text by text
    (SentencePiece's batch call starts a thread pool: 0.5-0.9 ms for one query); a large
    batch goes through the batch call. Both must give the ids offline embedding uses."""
    from embgemma_plugins.tokenizer import BATCH_ENCODE_MIN

    texts = texts_of(BATCH_ENCODE_MIN + 8, seed=9)
    many = gemma.tokenize(texts, "p: ")
    for i in (0, 5, BATCH_ENCODE_MIN + 7):
        one = gemma.tokenize([texts[i]], "p: ")
        np.testing.assert_array_equal(one.ids[0], many.ids[i])
        assert one.lengths[0] == many.lengths[i]
