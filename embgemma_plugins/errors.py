"""Error types.

Every error the runtime raises on purpose derives from :class:`EmbeddingGemmaError`;
argument problems are also :class:`ValueError` and missing files are also
:class:`FileNotFoundError`, so callers can catch either the project type or the
builtin one they already expect.
"""

from __future__ import annotations


class EmbeddingGemmaError(Exception):
    """Base class of the project's errors."""


class InvalidArgumentError(EmbeddingGemmaError, ValueError):
    """A bad task, dimension, provider, input item or option."""


class ModelNotFoundError(EmbeddingGemmaError, FileNotFoundError):
    """A model, variant or checkpoint file that cannot be found or fetched."""


class NonFiniteEmbeddingError(EmbeddingGemmaError, ValueError):
    """The session produced NaN or Inf for some inputs (never returned silently)."""

    def __init__(self, message: str, indices: list[int]) -> None:
        super().__init__(message)
        self.indices = indices


class BelowBarError(EmbeddingGemmaError):
    """An exported variant whose measured fidelity misses its bar (it is not installed)."""
