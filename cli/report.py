"""What a run prints at its end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from embgemma_plugins.jobs.job import Totals

from .progress import Progress, duration


def report(out: Path, id_field: str | None, t: Totals, progress: Progress,
           duplicates: dict[str, int], rejects: Path | None, say: Any) -> None:
    """The end-of-run lines: duplicate ids (always), rejects and the summary (unless -q)."""
    if duplicates:
        examples = ", ".join(f"{k!r} x{v}" for k, v in list(duplicates.items())[:5])
        click.echo(f"embgemma: warning: {len(duplicates)} duplicate id(s) in "
                   f"{id_field!r}: {examples}", err=True)
    if t.truncated:
        more = ", ..." if t.truncated > len(t.truncated_ids) else ""
        click.echo(f"embgemma: warning: {t.truncated} row(s) longer than --max-length were "
                   f"truncated (ids {', '.join(map(repr, t.truncated_ids))}{more}); each is "
                   f"listed in {rejects}; --long mean or late embeds all of a text", err=True)
    if rejects is not None and t.skipped:
        say(f"embgemma: {t.skipped} rejected row(s) listed in {rejects}")
    seconds, busy = progress.elapsed(), max(progress.busy(), 1e-9)
    reused = f", {t.reused:,} from the interrupted run" if t.reused else ""
    chunks = f" as {t.outputs:,} chunk rows" if t.outputs != t.written else ""
    long = f", {t.long:,} over --max-length embedded whole" if t.long else ""
    say(f"embgemma: {t.written:,} rows -> {out}{chunks} ({t.skipped:,} skipped, {t.truncated:,} "
        f"truncated{long}{reused}) in {duration(seconds)} (embedding {duration(busy)}): "
        f"{progress.embedded / busy:,.1f} rows/s, {progress.tokens / busy:,.0f} tokens/s")
