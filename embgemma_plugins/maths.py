"""Pure numpy maths of the runtime: post-processing of sentence embeddings, and the
Hadamard rotation that quantised weights and table rows are stored in."""

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


#: Hadamard blocks of a rotation: large enough to spread a row's outliers over many values,
#: small enough that undoing it costs little (64 multiply-adds a value).
ROTATION_BLOCK = 64


def hadamard(n: int) -> np.ndarray:
    """Sylvester's n x n Hadamard matrix (entries +-1, symmetric, H H^T = n I)."""
    if n < 1 or n & (n - 1):
        raise ValueError(f"a Sylvester Hadamard matrix needs a power of two, not {n}")
    h = np.ones((1, 1), np.float32)
    while len(h) < n:
        h = np.block([[h, h], [h, -h]])
    return h


def rotation_block(width: int) -> int:
    """Hadamard block size for rows of `width`: the largest power of two dividing it, <= 64."""
    return min(ROTATION_BLOCK, width & -width)


def rotate(rows: np.ndarray, signs: np.ndarray, inverse: bool = False) -> np.ndarray:
    """rows @ R, or rows @ R^T with `inverse`, for the orthogonal R = diag(signs) .
    blockdiag(H_b, ..., H_b) / sqrt(b) along the last axis (b = `rotation_block`). Quantising
    values in this basis spreads each row's outliers over b values: close to Gaussian."""
    block = rotation_block(rows.shape[-1])
    h = hadamard(block) / np.float32(np.sqrt(block))
    x = rows if inverse else rows * signs
    out: np.ndarray = (x.reshape(*x.shape[:-1], -1, block) @ h).reshape(x.shape)
    return out * signs if inverse else out
