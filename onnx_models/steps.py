"""What a build tells its user while it runs: a line per step, and a bar for the steps that
count (calibration, the reference vectors, the measurement) with counts and an ETA.

On a terminal a bar is redrawn in place; elsewhere (a log, CI) it is a line at each tenth
of the work or every 30 seconds. A caller may pass any ``say(message)`` instead of the
default (stderr, ``embgemma: `` prefixed): bars then arrive as such lines.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

Say = Callable[[str], None]
WIDTH = 24  # characters of a bar
EVERY = 30.0  # seconds between lines of a bar off a terminal


def clock(seconds: float) -> str:
    minutes, secs = divmod(max(0, round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


class Steps:
    """The progress of one build: ``steps(message)`` for a step, ``steps.count(...)`` for a
    bar. Callable, so it is also a plain ``say(message)``."""

    def __init__(self, say: Say | None = None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.say: Say = say or self._print
        self.tty = say is None and self.stream.isatty()
        self.started = time.monotonic()

    def _print(self, message: str) -> None:
        print(f"embgemma: {message}", file=self.stream, flush=True)

    def __call__(self, message: str) -> None:
        self.say(f"{message} [{clock(time.monotonic() - self.started)}]")

    def count(self, label: str, total: int, unit: str) -> Tally:
        """A bar for ``total`` ``unit`` (call it with each amount done; ``close()`` ends it)."""
        return Tally(self, label, total, unit)


class Tally:
    """One bar: ``tally(n)`` after ``n`` more units are done."""

    def __init__(self, steps: Steps, label: str, total: int, unit: str) -> None:
        self.steps, self.label, self.total, self.unit = steps, label, max(total, 1), unit
        self.done = 0
        self.started = self.last = time.monotonic()
        self.tenth = 0
        self.closed = False

    def __call__(self, n: int) -> None:
        self.done = min(self.done + n, self.total)
        now = time.monotonic()
        tenth = self.done * 10 // self.total
        if self.steps.tty or tenth > self.tenth or now - self.last >= EVERY:
            self.tenth, self.last = tenth, now
            self.draw(now)
        if self.done >= self.total:
            self.close()

    def text(self, now: float) -> str:
        spent = now - self.started
        filled = self.done * WIDTH // self.total
        bar = "#" * filled + "." * (WIDTH - filled)
        left = spent * (self.total - self.done) / self.done if self.done else None
        eta = f", {clock(left)} left" if left is not None and self.done < self.total else ""
        return (f"{self.label} [{bar}] {self.done}/{self.total} {self.unit}, "
                f"{clock(spent)}{eta}")

    def draw(self, now: float, final: bool = False) -> None:
        if self.steps.tty:
            end = "\n" if final else ""
            self.steps.stream.write(f"\rembgemma: {self.text(now)}\x1b[K{end}")
            self.steps.stream.flush()
        else:
            self.steps.say(self.text(now))

    def close(self) -> None:
        """End the bar (its last state drawn once more on a terminal)."""
        if not self.closed:
            self.closed = True
            if self.steps.tty:
                self.draw(time.monotonic(), final=True)

    def __enter__(self) -> Tally:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
