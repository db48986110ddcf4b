"""How a job reports its progress: a small protocol the caller implements.

The job engine counts and calls; drawing (a bar on a terminal, log lines) is the caller's
business (the CLI's ``cli/progress.py``). :class:`NullProgress` reports nothing.
"""

from __future__ import annotations

from typing import Protocol


class ProgressSink(Protocol):
    def begin(self, fraction: float | None) -> None:
        """Embedding work starts (model loading is over); ``fraction`` of the input read."""

    def reused(self, rows: int) -> None:
        """``rows`` were taken from an interrupted run's finished chunks."""

    def advance(self, rows: int, tokens: int, fraction: float | None) -> None:
        """``rows`` (``tokens`` tokens) were embedded; ``fraction`` of the input is read."""


class NullProgress:
    """A sink that reports nothing (Ray actors, library callers that need no progress)."""

    def begin(self, fraction: float | None) -> None:
        pass

    def reused(self, rows: int) -> None:
        pass

    def advance(self, rows: int, tokens: int, fraction: float | None) -> None:
        pass
