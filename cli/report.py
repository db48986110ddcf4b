"""What a run prints at its end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from embgemma_plugins.jobs.job import Totals

from .progress import Progress, duration


def report(out: Path, id_field: str | None, t: Totals, progress: Progress,
           duplicates: dict[str, int], rejects: Path | None, say: Any,
           row_map: Path | None = None) -> None:
    """The end-of-run lines: duplicate ids and a .npy's row map (always); rejects, truncated
    rows and the summary (unless -q)."""
    if duplicates:
        examples = ", ".join(f"{k!r} x{v}" for k, v in list(duplicates.items())[:5])
        click.echo(f"embgemma: warning: {len(duplicates)} duplicate id(s) in "
                   f"{id_field!r}: {examples}", err=True)
    if row_map is not None:
        click.echo(f"embgemma: note: {t.skipped} row(s) were skipped, so vector i of {out.name} "
                   f"is input row numpy.load('{row_map}')[i] (0-based)", err=True)
    if t.truncated:
        lines = ", ".join(map(str, t.truncated_lines))
        more = t.truncated - len(t.truncated_lines)
        where = f"{t.source}s {lines}{f' and {more:,} more' if more > 0 else ''}; " if (
            t.source and t.truncated_lines) else ""
        ids = ", ".join(map(repr, t.truncated_ids))
        ids += ", ..." if t.truncated > len(t.truncated_ids) else ""
        click.echo(f"embgemma: warning: {t.truncated:,} row(s) longer than --max-length were "
                   f"truncated ({where}ids {ids}); each is listed in {rejects}; --long mean or "
                   "late embeds all of a text, --long error stops at the first", err=True)
    if rejects is not None and t.skipped:
        say(f"embgemma: {t.skipped} rejected row(s) listed in {rejects}")
    seconds, busy = progress.elapsed(), max(progress.busy(), 1e-9)
    reused = f", {t.reused:,} from the interrupted run" if t.reused else ""
    chunks = f" as {t.outputs:,} chunk rows" if t.outputs != t.written else ""
    long = f", {t.long:,} over --max-length embedded whole" if t.long else ""
    say(f"embgemma: {t.written:,} rows -> {out}{chunks} ({t.skipped:,} skipped, {t.truncated:,} "
        f"truncated{long}{reused}) in {duration(seconds)} (embedding {duration(busy)}): "
        f"{progress.embedded / busy:,.1f} rows/s, {progress.tokens / busy:,.0f} tokens/s")
