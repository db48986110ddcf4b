"""Output precision: float32 vectors, or sentence-transformers' quantised forms.

``int8``/``uint8`` are scalar quantisation with per-dimension ``[min, max]`` ranges
(256 buckets), exactly as ``sentence_transformers.quantize_embeddings`` computes
them; the ranges are calibrated once (the job uses its first chunk) and recorded in
the output's metadata, so every chunk, every resumed run and every engine uses the
same ones.  ``binary``/``ubinary`` pack the sign bits (``value > 0``) into bytes,
``dimensions / 8`` of them, as ``int8`` (minus 128) or ``uint8``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pyarrow loads only where Arrow data is built (see jobs/parts.py)
    import pyarrow as pa

PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")
CALIBRATED = ("int8", "uint8")

Ranges = list[list[float]]


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def value_type(precision: str) -> pa.DataType:
    """Arrow type of one embedding value at ``precision``."""
    import pyarrow as pa

    return pa.from_numpy_dtype(numpy_type(precision))


def numpy_type(precision: str) -> np.dtype:
    """NumPy type of one embedding value at ``precision`` (what `quantise` returns)."""
    name = {"float32": "float32", "int8": "int8", "uint8": "uint8", "binary": "int8",
            "ubinary": "uint8"}[check_precision(precision)]
    return np.dtype(name)


def width(precision: str, dimensions: int) -> int:
    """Values per stored embedding: the dimensions, or one byte per 8 of them."""
    return dimensions // 8 if check_precision(precision) in ("binary", "ubinary") else dimensions


def calibrate(vectors: np.ndarray) -> Ranges:
    """Per-dimension ``[mins, maxs]`` of float32 vectors, as plain (JSON-exact) floats."""
    if len(vectors) == 0:
        raise ValueError("cannot calibrate int8/uint8 ranges on zero vectors")
    v = np.asarray(vectors, dtype=np.float32)
    return [v.min(axis=0).tolist(), v.max(axis=0).tolist()]


def quantise(vectors: np.ndarray, precision: str, ranges: Sequence[Sequence[float]] | None = None
             ) -> np.ndarray:
    """``vectors`` (float32, n x d) at ``precision``; int8/uint8 need ``ranges``."""
    v = np.asarray(vectors, dtype=np.float32)
    if check_precision(precision) == "float32":
        return v
    if precision in CALIBRATED:
        if ranges is None:
            raise ValueError(f"{precision} quantisation needs calibration ranges")
        r = np.asarray(ranges, dtype=np.float32)
        if r.shape != (2, v.shape[1]):
            raise ValueError(f"ranges must have shape (2, {v.shape[1]}), got {r.shape}")
        starts = r[0, :]
        steps = (r[1, :] - r[0, :]) / 255
        steps = np.where(steps == 0, 1, steps)
        q = np.clip(np.floor((v - starts) / steps), 0, 255)
        return q.astype(np.uint8) if precision == "uint8" else (q - 128).astype(np.int8)
    packed = np.packbits(v > 0, axis=-1).reshape(v.shape[0], -1)
    if precision == "ubinary":
        return packed
    return (packed.astype(np.int16) - 128).astype(np.int8)


def arrow_embedding(q: np.ndarray, precision: str) -> pa.FixedSizeListArray:
    """Already quantised values ``q`` (rows x width) as the ``embedding`` column."""
    import pyarrow as pa

    q = np.ascontiguousarray(q)
    values = pa.array(q.reshape(-1), type=value_type(precision))
    return pa.FixedSizeListArray.from_arrays(values, q.shape[1] if q.ndim == 2 else 0)
