"""Windows over a long document's tokens, and which window each token's state comes from.

Pure numpy. A document of ``n`` body tokens (its text's pieces, after the prompt) goes
through the transformer in windows of at most ``capacity`` body tokens, each framed by
BOS, the prompt and EOS. Windows overlap by at least ``overlap`` tokens and are spread
evenly from the first token to the last.

**The rule at a window boundary.** A token covered by several windows takes its state
from the one where it has the most context on its nearer side: the window maximising
``min(t - start, end - 1 - t)``, where a side that is the document's own start or end
counts as unlimited context (nothing was cut there). Ties go to the earlier window. For
two overlapping windows ``[a1, b1)`` and ``[a2, b2)`` this cuts the overlap in the
middle: tokens ``t <= (b1 - 1 + a2) / 2`` come from the first window, the rest from the
second, so every token has at least ``overlap // 2`` tokens of context on a cut side.
"""

from __future__ import annotations

import math

import numpy as np

from embgemma_plugins.errors import InvalidArgumentError


def plan_windows(n: int, capacity: int, overlap: int) -> list[tuple[int, int]]:
    """``[start, end)`` body-token ranges of the windows over ``n`` tokens."""
    if capacity < 1:
        raise InvalidArgumentError(f"a window must hold at least one token, got {capacity}")
    if not 0 <= overlap <= capacity // 2:
        raise InvalidArgumentError(
            f"window overlap must be in 0..{capacity // 2} (half a window), got {overlap}"
        )
    if n <= capacity:
        return [(0, n)]
    stride = max(capacity - overlap, 1)
    count = math.ceil((n - capacity) / stride) + 1
    starts = np.rint(np.linspace(0, n - capacity, count)).astype(np.int64)
    return [(int(s), int(s) + capacity) for s in starts]


def context(windows: list[tuple[int, int]], n: int) -> np.ndarray:
    """``out[w, t]``: the context token ``t`` has in window ``w`` on its nearer cut side
    (``-1`` where the window does not cover it; a document edge counts as unlimited)."""
    t = np.arange(n, dtype=np.int64)
    out = np.full((len(windows), n), -1, dtype=np.int64)
    unlimited = np.int64(n + 1)
    for w, (start, end) in enumerate(windows):
        left = t - start if start > 0 else np.full(n, unlimited)
        right = end - 1 - t if end < n else np.full(n, unlimited)
        inside = (t >= start) & (t < end)
        out[w, inside] = np.minimum(left, right)[inside]
    return out


def assign(windows: list[tuple[int, int]], n: int) -> np.ndarray:
    """The window each of the ``n`` tokens takes its state from (see the module docstring)."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    chosen: np.ndarray = np.argmax(context(windows, n), axis=0)  # first maximum: earlier window
    return chosen


def span_sums(
    states: np.ndarray, mine: np.ndarray, spans: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per span ``[i0, i1)`` (token indices relative to ``states``' first row): the sum of
    the states of its tokens that ``mine`` marks, and how many there are."""
    kept = np.where(mine[:, None], states, 0).astype(np.float64)
    prefix = np.zeros((len(states) + 1, states.shape[1]), dtype=np.float64)
    np.cumsum(kept, axis=0, out=prefix[1:])
    counts = np.concatenate([[0], np.cumsum(mine, dtype=np.int64)])
    lo = np.clip(spans[:, 0], 0, len(states))
    hi = np.clip(spans[:, 1], 0, len(states))
    hi = np.maximum(hi, lo)
    sums: np.ndarray = prefix[hi] - prefix[lo]
    return sums, counts[hi] - counts[lo]
