"""Progress on stderr: a redrawn bar on a terminal, periodic plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


class Progress:
    """Counts rows and tokens embedded by this process and reports them.

    ``mode`` is ``bar`` (a terminal), ``lines`` (a log) or ``quiet``.  Rates count
    only work done in this process, so rows reused by ``--resume`` do not inflate
    them; the ETA extrapolates the fraction of the input read.
    """

    def __init__(self, mode: str, interval: float, stream: TextIO | None = None) -> None:
        self.mode = mode
        self.interval = interval
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.rows = 0  # rows written to the output so far (reused ones included)
        self.embedded = 0  # rows embedded by this process
        self.tokens = 0
        self._first: tuple[float, float] | None = None  # (time, fraction) of first work
        self._last = 0.0
        self._drawn = False

    @staticmethod
    def choose(quiet: bool, stream: TextIO | None = None) -> str:
        if quiet:
            return "quiet"
        return "bar" if (stream or sys.stderr).isatty() else "lines"

    def reused(self, rows: int) -> None:
        self.rows += rows

    def begin(self, fraction: float | None) -> None:
        """Mark the start of embedding work (the first call counts)."""
        if self._first is None:
            self._first = (time.monotonic(), fraction or 0.0)
            self._last = self._first[0]

    def busy(self) -> float:
        """Seconds since embedding work began (model loading excluded)."""
        return time.monotonic() - self._first[0] if self._first else 0.0

    def advance(self, rows: int, tokens: int, fraction: float | None) -> None:
        now = time.monotonic()
        self.begin(fraction)
        self.rows += rows
        self.embedded += rows
        self.tokens += tokens
        if self.mode != "quiet" and now - self._last >= self.interval:
            self._last = now
            self._report(now, fraction)

    def _report(self, now: float, fraction: float | None) -> None:
        first_time, first_fraction = self._first or (now, 0.0)
        busy = max(now - first_time, 1e-9)
        parts = [f"{self.rows:,} rows", f"{self.embedded / busy:,.1f} rows/s",
                 f"{self.tokens / busy:,.0f} tokens/s"]
        if fraction is not None:
            done = fraction - first_fraction
            if done > 0 and busy > 1:
                parts.append(f"ETA {duration(busy / done * (1 - fraction))}")
            parts.insert(0, f"{100 * fraction:5.1f}%")
        if self.mode == "bar":
            bar = ""
            if fraction is not None:
                filled = int(24 * fraction)
                bar = "[" + "#" * filled + "." * (24 - filled) + "] "
            self.stream.write("\r" + bar + "  ".join(parts) + "\x1b[K")
            self._drawn = True
        else:
            self.stream.write("embgemma: " + ", ".join(parts) + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def elapsed(self) -> float:
        return time.monotonic() - self.start
