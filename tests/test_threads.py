"""One instance shared by threads returns what sequential calls return."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tests.texts import TEXTS


def test_concurrent_calls_equal_sequential(tiny_gemma):
    jobs = [
        (TEXTS[i:] + TEXTS[:i], task)
        for i in range(len(TEXTS))
        for task in ("query", "document", "STS")
    ]
    sequential = [tiny_gemma.embed(texts, task=task) for texts, task in jobs]
    with ThreadPoolExecutor(max_workers=6) as pool:
        concurrent = list(pool.map(lambda job: tiny_gemma.embed(job[0], task=job[1]), jobs * 2))
    for got, expected in zip(concurrent, sequential * 2, strict=True):
        np.testing.assert_allclose(got, expected, atol=2e-6)
