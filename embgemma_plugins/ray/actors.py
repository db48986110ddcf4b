"""The callable classes Ray Data runs as actors: one ONNX session each, loaded once.

:class:`ChunkEmbedder` is the CLI's job: one dataset row is one chunk of the input,
embedded by the local engine's own :func:`~embgemma_plugins.jobs.job.embed_chunk`
(so the batching, and thus every float, is the local engine's) and written as that
chunk's part by :meth:`~embgemma_plugins.jobs.workdir.WorkDir.write_part`.  Parts are
named by chunk and replaced atomically, so a chunk retried after an actor died is
written once, whole; the actor returns only a small row of counts.

:class:`RowEmbedder` serves :func:`~embgemma_plugins.ray.embed_dataset`: rows in,
rows of the output schema (:class:`~embgemma_plugins.jobs.output.Layout`) out.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pyarrow as pa

from embgemma_plugins.errors import RowError
from embgemma_plugins.jobs.job import Embedded, Job, digest, embed_chunk
from embgemma_plugins.jobs.longtext import ChunkRows
from embgemma_plugins.jobs.output import Layout
from embgemma_plugins.jobs.progress import NullProgress
from embgemma_plugins.jobs.quantise import Ranges, calibrate
from embgemma_plugins.jobs.records import Record, Reject, extract
from embgemma_plugins.jobs.workdir import WorkDir
from embgemma_plugins.ray.ship import Shipment, open_model
from embgemma_plugins.ray.spans import Source
from embgemma_plugins.settings import ModelSettings

#: The row an actor returns per chunk: what the driver needs for totals and checks.
STATS = pa.schema([
    ("index", pa.int64()), ("rows", pa.int64()), ("written", pa.int64()),
    ("skipped", pa.int64()), ("truncated", pa.int64()), ("tokens", pa.int64()),
    ("long", pa.int64()), ("outputs", pa.int64()), ("truncated_ids", pa.string()),
    ("pid", pa.int64()), ("cpu", pa.float64()), ("calibration", pa.string()),
])


@dataclass(frozen=True)
class EmbedTask:
    """Everything an actor needs besides the rows (pickled once per actor)."""

    model: ModelSettings  # build_missing=False: actors never build (ray/ship.py)
    layout: Layout
    prompt: str
    titled: bool  # documents get ``title: {title} | text: `` from the title field
    on_error: str = "error"
    on_long: str = "truncate"
    ranges: Ranges | None = None  # int8/uint8 calibration, once known
    calibrate: bool = False  # derive the ranges from this chunk (the first one)
    out: str = ""  # the CLI's OUT: parts go to its work folder
    source: Source | None = None
    chunking: ChunkRows | None = None  # --chunk-tokens: one output row per chunk of text
    ship: Shipment | None = None  # the driver's folder, for an actor whose machine lacks it


class _Actor:
    def __init__(self, task: EmbedTask) -> None:
        self.task = task
        self.model = open_model(task.model, task.ship)
        titled = self.model.prompts.document_prompt if task.titled else None
        self.job = Job(task.layout, 1, task.on_error, task.on_long, task.prompt, titled,
                       chunking=task.chunking)
        self.quiet = NullProgress()

    def vectors(self, records: list[Record], where: Any) -> Embedded:
        return embed_chunk(self.job, self.model, where, records, self.quiet, 0)


class ChunkEmbedder(_Actor):
    """Embeds whole chunks of the CLI's input and writes each as its part."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = [self.chunk(int(i), pickle.loads(b)) for i, b in
                zip(batch.column("chunk").to_pylist(), batch.column("items").to_pylist(),
                    strict=True)]
        return pa.Table.from_pylist(rows, schema=STATS)

    def chunk(self, index: int, items: list[Record | Reject]) -> dict[str, Any]:
        """The loop body of :func:`embgemma_plugins.jobs.job.run`, for one chunk."""
        t = self.task
        started = time.process_time()  # CPU seconds: a per-core rate even on a busy node
        source = cast(Source, t.source)
        rejects = [i for i in items if isinstance(i, Reject)]
        if rejects and t.on_error == "error":
            raise RowError(f"{source.where(rejects[0].line)}: {rejects[0].reason}")
        records = [i for i in items if isinstance(i, Record)]
        done = self.vectors(records, source)
        vectors, stats = done.vectors, done.stats
        key = digest(items, t.ranges)
        ranges, calibration = t.ranges, None
        if t.calibrate and len(vectors):
            ranges = calibrate(vectors)
            calibration = {"chunk": index, "digest": key, "ranges": ranges,
                           "rows": len(records)}
        stats.update(digest=key, index=index, rows=len(items), skipped=len(rejects),
                     pid=os.getpid())
        part = t.layout.part(records, vectors, ranges, done.chunks)
        notes = sorted([*rejects, *done.notes], key=lambda r: r.row)
        WorkDir(Path(t.out)).write_part(index, part, stats, notes, source.uri)
        return {**stats, "cpu": time.process_time() - started,
                "truncated_ids": json.dumps(stats["truncated_ids"]),
                "calibration": json.dumps(calibration) if calibration else None}


class RowEmbedder(_Actor):
    """Rows with the text (and id, title, kept) fields in; the output's rows out."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        t, spec = self.task, self.task.layout.spec
        items = [extract(data, spec, i, i + 1)
                 for i, data in enumerate(batch.select(spec.columns()).to_pylist())]
        bad = [i for i in items if isinstance(i, Reject)]
        if bad and t.on_error == "error":
            raise RowError(f"{bad[0].reason} (on_error='skip' drops such rows)")
        records = [i for i in items if isinstance(i, Record)]
        return t.layout.table(records, self.vectors(records, _NoLines()).vectors, t.ranges)


class _NoLines:
    """Rows of a Dataset have no line numbers; messages say which row of the batch."""

    def where(self, line: int) -> str:
        return f"row {line} of a batch"
