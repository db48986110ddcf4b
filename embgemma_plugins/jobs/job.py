"""The embedding loop: deterministic chunks, one part file per chunk, then assembly.

Input rows are cut into chunks of ``chunk_rows`` rows (rejected rows included), so
chunk ``k`` is always the same rows and is always batched the same way: a chunk
embedded after a crash gives the same bytes as in an uninterrupted run.  Finished
chunks are parts in the work folder (:mod:`.workdir`); ``OUT`` appears, by rename,
only once all of them are assembled (:mod:`.finish`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

import numpy as np

from embgemma_plugins.batching import plan_batches
from embgemma_plugins.errors import RowError
from embgemma_plugins.jobs.output import Layout
from embgemma_plugins.jobs.progress import ProgressSink
from embgemma_plugins.jobs.quantise import CALIBRATED, Ranges, calibrate
from embgemma_plugins.jobs.readers import Reader
from embgemma_plugins.jobs.records import Record, Reject
from embgemma_plugins.jobs.workdir import WorkDir

Item: TypeAlias = Record | Reject


class Model(Protocol):
    """What the loop needs of :class:`~embgemma_plugins.EmbeddingGemma`."""

    batch_tokens: int
    max_length: int

    @property
    def bounds(self) -> tuple[int, ...]: ...
    def tokenize(self, texts: list[str], prompts: str | list[str] = "") -> Any: ...
    def embed_tokens(self, encoded: Any) -> np.ndarray: ...


@dataclass
class Totals:
    rows: int = 0  # input rows read
    written: int = 0
    skipped: int = 0
    truncated: int = 0
    tokens: int = 0
    chunks: int = 0
    reused: int = 0

    def add(self, stats: dict[str, Any]) -> None:
        for key in ("rows", "written", "skipped", "truncated", "tokens"):
            setattr(self, key, getattr(self, key) + int(stats[key]))
        self.chunks += 1


@dataclass
class Job:
    layout: Layout
    chunk_rows: int
    on_error: str = "error"
    on_long: str = "truncate"
    prompt: str = ""
    titled: Any = None  # title -> prompt (``document_prompt``) when --title-field is set
    state: dict[str, Any] = field(default_factory=dict)


def chunked(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    chunk: list[Item] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def digest(items: list[Item], ranges: Ranges | None) -> str:
    """A fingerprint of a chunk's input rows (and the calibration it is quantised with)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(ranges).encode())
    for item in items:
        h.update(json.dumps(
            [item.row, item.id, item.text, item.title, list(item.keep)]
            if isinstance(item, Record) else [item.row, item.line, item.reason, item.raw],
            ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()


def run(job: Job, model: Model, reader: Reader, work: WorkDir, progress: ProgressSink) -> Totals:
    """Embed every chunk not already finished in ``work``; the totals cover all chunks."""
    totals = Totals()
    precision = job.layout.precision
    cal = job.state.get("calibration")
    ranges: Ranges | None = None
    before = reader.progress()
    for index, items in enumerate(chunked(reader, job.chunk_rows)):
        after = reader.progress()
        span = (before, after)
        before = after
        calibrating = precision in CALIBRATED and ranges is None
        key = digest(items, ranges)
        stats = work.finished(index, key)
        if stats is not None and calibrating:
            stats = stats if cal and cal.get("digest") == key else None
            ranges = cal["ranges"] if stats is not None and cal else None
        if stats is not None:
            totals.add(stats)
            totals.reused += int(stats["written"])
            progress.reused(int(stats["written"]))
            continue
        rejects = [i for i in items if isinstance(i, Reject)]
        if rejects and job.on_error == "error":
            raise RowError(f"{reader.where(rejects[0].line)}: {rejects[0].reason}", totals.written)
        records = [i for i in items if isinstance(i, Record)]
        vectors, stats = embed_chunk(job, model, reader, records, progress, totals.written, span)
        if calibrating and records:
            ranges = calibrate(vectors)
            job.state["calibration"] = {"chunk": index, "digest": key, "ranges": ranges,
                                        "rows": len(records)}
            cal = job.state["calibration"]
            work.write_state(job.state)
        stats.update(digest=key, index=index, rows=len(items), skipped=len(rejects))
        part = job.layout.part(records, vectors, ranges)
        work.write_part(index, part, stats, rejects, reader.name)
        totals.add(stats)
    return totals


def embed_chunk(
    job: Job, model: Model, reader: Reader, records: list[Record], progress: ProgressSink,
    saved: int, span: tuple[float | None, float | None] = (None, None),
) -> tuple[np.ndarray, dict[str, Any]]:
    """Vectors of one chunk, batched exactly as ``embed_tokens`` batches the chunk."""
    texts = [r.text for r in records]
    prompts: str | list[str] = (
        [job.titled(r.title) for r in records] if job.titled else job.prompt
    )
    encoded = model.tokenize(texts, prompts)
    truncated = encoded.truncated
    if job.on_long == "error" and truncated.any():
        first = int(np.flatnonzero(truncated)[0])
        raise RowError(
            f"{reader.where(records[first].line)}: text is {int(encoded.lengths[first])} tokens "
            f"with its prompt, longer than --max-length {model.max_length} (use --on-long "
            "truncate to cut it)", saved)
    ids = encoded.ids
    lengths = [len(x) for x in ids]
    vectors = np.empty((len(ids), job.layout.dimensions), dtype=np.float32)
    # One batch at a time, for progress: embed_tokens plans a sorted batch exactly as
    # it is, so the vectors are the ones a single call on the whole chunk returns (and,
    # as no batch straddles a bound, the ones each text has alone).
    start, end = span[0] or 0.0, span[1]
    done = 0
    progress.begin(start)
    for batch in plan_batches(lengths, model.batch_tokens, bounds=model.bounds):
        vectors[batch] = model.embed_tokens([ids[i] for i in batch])
        done += len(batch)
        fraction = None if end is None else start + (end - start) * done / len(ids)
        progress.advance(len(batch), sum(lengths[i] for i in batch), fraction)
    stats = {"written": len(records), "truncated": int(truncated.sum()),
             "tokens": int(sum(lengths))}
    return vectors, stats

