"""Length-sorted, token-budget batching.

Sorting by length puts texts of similar length together, so a batch carries almost
no padding; cutting batches by a budget of *padded* tokens (rows x longest row)
keeps memory and latency per batch bounded whether the texts are 5 or 2048 tokens
long.  Order is restored by the caller from the index arrays returned here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from embgemma_plugins.errors import InvalidArgumentError

# 1024: as fast as 2048 on the benchmark documents (interleaved A/B, int8: 0.92-1.00x the
# time) with a third less activation memory; docs/benchmarks.md.
DEFAULT_BATCH_TOKENS = 1024
DEFAULT_MAX_BATCH_SIZE = 256


def plan_batches(
    lengths: Sequence[int] | np.ndarray,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
) -> list[np.ndarray]:
    """Split indices of ``lengths`` into batches of similar length.

    Longest texts come first (the most memory-hungry batch runs first, so a budget
    that is too large fails fast).  Each batch satisfies
    ``len(batch) * max(lengths[batch]) <= batch_tokens`` unless a single text is
    longer than the budget, in which case it forms a batch of its own.  Ties keep
    input order, so the plan is deterministic.
    """
    if batch_tokens < 1:
        raise InvalidArgumentError(f"batch_tokens must be positive, got {batch_tokens}")
    if max_batch_size < 1:
        raise InvalidArgumentError(f"max_batch_size must be positive, got {max_batch_size}")
    lens = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lens, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        width = int(lens[order[start]])  # the longest row of this batch
        size = max(1, min(max_batch_size, batch_tokens // max(width, 1)))
        batches.append(order[start : start + size])
        start += size
    return batches
