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


class InputError(EmbeddingGemmaError):
    """An input that cannot be read at all (not a single bad row)."""


class JobError(EmbeddingGemmaError):
    """A batch job that stopped; the message says what was kept and how to go on."""


class RowError(JobError):
    """A row that stops the run (bad input under ``on_error="error"``, or too long);
    picklable, so it crosses from a Ray actor to the driver whole."""

    def __init__(self, message: str, saved_rows: int = 0) -> None:
        super().__init__(message)
        self.saved_rows = saved_rows

    def __reduce__(self) -> tuple[type[RowError], tuple[str, int]]:
        return (type(self), (str(self), self.saved_rows))


class TooLongError(RowError):
    """A text longer than ``max_length`` under ``on_long="error"`` (skipping rows does not
    help: truncating, or a larger ``max_length``, does)."""


class JobInterrupted(JobError):
    """A job stopped by SIGINT or SIGTERM; finished chunks are kept for ``--resume``."""


class DamagedModelError(ModelNotFoundError):
    """A variant folder whose files do not match its manifest (never loaded)."""

    def __init__(self, message: str, files: list[str]) -> None:
        super().__init__(message)
        self.files = files

    def __reduce__(self) -> tuple[type[DamagedModelError], tuple[str, list[str]]]:
        return (type(self), (str(self), self.files))  # whole across processes (Ray)


class TruncationWarning(UserWarning):
    """Texts that were longer than the model's window and were cut (``long="truncate"``):
    ``indices`` are their positions in the call's input, ``lengths`` their full token
    counts (prompt, BOS and EOS included)."""

    def __init__(self, message: str, indices: list[int], lengths: list[int]) -> None:
        super().__init__(message)
        self.indices = indices
        self.lengths = lengths


def missing_extra(e: ImportError, needs: str, extra: str) -> ImportError:
    """The error an optional module raises when its extra is not installed, naming it."""
    return ImportError(f"{needs} ({e.name} is missing): pip install 'embgemma-plugins[{extra}]'")
