"""What a run prints at its end, and the hint about the work it keeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from embgemma_plugins.cli.job import Totals
from embgemma_plugins.cli.parts import PART_SUFFIX
from embgemma_plugins.cli.progress import Progress, duration
from embgemma_plugins.cli.workdir import WorkDir


def saved_hint(work: WorkDir) -> str:
    parts = len(list(work.path.glob(f"part-*{PART_SUFFIX}"))) if work.path.is_dir() else 0
    return f"\n{parts} finished chunk(s) are kept in {work.path}" if parts else ""


def report(out: Path, id_field: str | None, t: Totals, progress: Progress,
           duplicates: dict[str, int], rejects: Path | None, say: Any) -> None:
    """The end-of-run lines: duplicate ids (always), rejects and the summary (unless -q)."""
    if duplicates:
        examples = ", ".join(f"{k!r} x{v}" for k, v in list(duplicates.items())[:5])
        click.echo(f"embgemma: warning: {len(duplicates)} duplicate id(s) in "
                   f"{id_field!r}: {examples}", err=True)
    if rejects is not None:
        say(f"embgemma: {t.skipped} rejected row(s) listed in {rejects}")
    seconds, busy = progress.elapsed(), max(progress.busy(), 1e-9)
    reused = f", {t.reused:,} from the interrupted run" if t.reused else ""
    say(f"embgemma: {t.written:,} rows -> {out} ({t.skipped:,} skipped, {t.truncated:,} "
        f"truncated{reused}) in {duration(seconds)} (embedding {duration(busy)}): "
        f"{progress.embedded / busy:,.1f} rows/s, {progress.tokens / busy:,.0f} tokens/s")
