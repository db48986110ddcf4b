"""Length-sorted, token-budget batching.

Sorting by length puts texts of similar length together, so a batch carries almost
no padding; cutting batches by a budget of *padded* tokens (rows x longest row)
keeps memory and latency per batch bounded whether the texts are 5 or 2048 tokens
long.  Order is restored by the caller from the index arrays returned here.

A text's vector must not depend on its batch mates, yet padding decides some of the
arithmetic: the graph and ONNX Runtime's kernels pick their path by the padded length,
and two paths round differently. In the quantised variants a rounding-level difference
flips an activation code now and then, which moves the vector by up to 3e-3 per
component. So the plan never pads a text across a *bound*, a padded length where the
path changes: texts on the two sides of a bound never share a batch, and each text is
computed as it is alone. Within the bounds every text's vector is the same however it
is batched (docs/variants.md, "Batch invariance").
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np

from embgemma_plugins.errors import InvalidArgumentError

# 1024: as fast as 2048 on the benchmark documents (interleaved A/B, int8: 0.92-1.00x the
# time) with a third less activation memory; docs/benchmarks.md.
DEFAULT_BATCH_TOKENS = 1024
DEFAULT_MAX_BATCH_SIZE = 256
#: Graph metadata: JSON list of the padded lengths where the graph itself changes path
#: (the build's passes record them; onnx_models/window.py: the banded attention's test).
BOUNDS_KEY = "embgemma.length_bounds"
#: Where ONNX Runtime's CPU `Attention` changes path for EmbeddingGemma's 256-wide heads:
#: MLAS's sgemm sums each q.k product in one pass up to 64 keys and in two blocks of 128
#: above (its K stride doubles while the key count fits half its N stride), so a text of
#: up to 64 tokens padded past 64 gets its scores rounded otherwise.
KERNEL_BOUNDS = (64,)


def path_bounds(metadata: Mapping[str, str]) -> tuple[int, ...]:
    """The bounds of a graph given its metadata (ONNX Runtime's ``custom_metadata_map``):
    the kernels' and those the graph records."""
    raw = metadata.get(BOUNDS_KEY)
    try:
        recorded = [int(b) for b in json.loads(raw)] if raw else []
    except (ValueError, TypeError) as e:
        raise InvalidArgumentError(f"graph metadata {BOUNDS_KEY}={raw!r} is not a list of "
                                   "integers; rebuild the variant (embgemma export)") from e
    return tuple(sorted({*KERNEL_BOUNDS, *recorded}))


def plan_batches(
    lengths: Sequence[int] | np.ndarray,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    bounds: Sequence[int] = (),
) -> list[np.ndarray]:
    """Split indices of ``lengths`` into batches of similar length.

    Longest texts come first (the most memory-hungry batch runs first, so a budget
    that is too large fails fast).  Each batch satisfies
    ``len(batch) * max(lengths[batch]) <= batch_tokens`` unless a single text is
    longer than the budget, in which case it forms a batch of its own.  No batch
    holds a text of at most ``b`` tokens beside one of more, for each ``b`` in
    ``bounds``.  Ties keep input order, so the plan is deterministic.
    """
    if batch_tokens < 1:
        raise InvalidArgumentError(f"batch_tokens must be positive, got {batch_tokens}")
    if max_batch_size < 1:
        raise InvalidArgumentError(f"max_batch_size must be positive, got {max_batch_size}")
    lens = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lens, kind="stable")
    # side of each bound, in sorted order: non-increasing, so each side is one run
    side = np.searchsorted(np.sort(np.asarray(bounds, np.int64)), lens[order], side="left")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        width = int(lens[order[start]])  # the longest row of this batch
        size = max(1, min(max_batch_size, batch_tokens // max(width, 1)))
        end = start + int(np.searchsorted(-side[start:start + size], -side[start], "right"))
        batches.append(order[start:end])
        start = end
    return batches
