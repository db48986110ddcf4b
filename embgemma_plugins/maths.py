"""Pure numpy post-processing of sentence embeddings."""

from __future__ import annotations

import numpy as np

from embgemma_plugins.errors import InvalidArgumentError, NonFiniteEmbeddingError

#: The Matryoshka dimensions EmbeddingGemma was trained for.
DIMENSIONS: tuple[int, ...] = (768, 512, 256, 128)


def check_dimensions(dimensions: int) -> int:
    if isinstance(dimensions, bool) or not isinstance(dimensions, (int, np.integer)):
        raise InvalidArgumentError(f"dimensions must be an integer, got {dimensions!r}")
    if int(dimensions) not in DIMENSIONS:
        raise InvalidArgumentError(
            f"dimensions must be one of {', '.join(map(str, DIMENSIONS))} "
            f"(EmbeddingGemma's Matryoshka sizes), got {dimensions}"
        )
    return int(dimensions)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out: np.ndarray = x / np.maximum(norms, np.finfo(np.float32).tiny)
    return out


def truncate(embeddings: np.ndarray, dimensions: int) -> np.ndarray:
    """Matryoshka: keep the first ``dimensions`` values, then renormalise."""
    if dimensions > embeddings.shape[1]:
        raise InvalidArgumentError(
            f"dimensions {dimensions} exceeds the model's output size {embeddings.shape[1]}"
        )
    if dimensions == embeddings.shape[1]:
        return np.ascontiguousarray(embeddings, dtype=np.float32)
    return l2_normalise(embeddings[:, :dimensions]).astype(np.float32, copy=False)


def check_finite(embeddings: np.ndarray, indices: np.ndarray) -> None:
    """Raise, naming the input indices, if any row holds NaN or Inf."""
    bad = ~np.isfinite(embeddings).all(axis=1)
    if bad.any():
        where = sorted(int(i) for i in np.asarray(indices)[bad])
        raise NonFiniteEmbeddingError(
            f"the model produced NaN/Inf for input(s) at index {where[:20]}"
            f"{' ...' if len(where) > 20 else ''}; this usually means float16 activations "
            "(not supported by EmbeddingGemma) or a broken export",
            where,
        )
