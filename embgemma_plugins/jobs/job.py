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
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, cast

import numpy as np

from embgemma_plugins.batching import plan_batches
from embgemma_plugins.chunking import Chunk
from embgemma_plugins.errors import RowError, TooLongError
from embgemma_plugins.jobs.longtext import (
    ChunkRows,
    chunk_stats,
    embed_chunk_rows,
    embed_over,
    truncation_notes,
)
from embgemma_plugins.jobs.output import Layout
from embgemma_plugins.jobs.progress import ProgressSink
from embgemma_plugins.jobs.quantise import CALIBRATED, Ranges, calibrate
from embgemma_plugins.jobs.readers import Reader
from embgemma_plugins.jobs.records import Record, Reject
from embgemma_plugins.jobs.workdir import WorkDir

if TYPE_CHECKING:
    from embgemma_plugins.model import EmbeddingGemma

Item: TypeAlias = Record | Reject
TRUNCATED_LISTED = 10  # truncated rows a summary names (each part records all of its own)


class Model(Protocol):
    """What the loop needs of :class:`~embgemma_plugins.EmbeddingGemma` (the long-text
    paths, :mod:`.longtext`, take the model itself)."""

    batch_tokens: int
    max_length: int
    dimensions: int

    @property
    def bounds(self) -> tuple[int, ...]: ...
    def tokenize(self, texts: list[str], prompts: str | list[str] = "") -> Any: ...
    def embed_tokens(self, encoded: Any) -> np.ndarray: ...


@dataclass
class Totals:
    rows: int = 0  # input rows read
    written: int = 0  # input rows embedded
    skipped: int = 0
    truncated: int = 0
    long: int = 0  # rows over --max-length embedded whole (--long mean or late)
    outputs: int = 0  # output rows (one per chunk of text with --chunk-tokens)
    tokens: int = 0
    chunks: int = 0
    reused: int = 0
    truncated_lines: list[int] = field(default_factory=list)  # the first few, for the summary
    source: str | None = None  # ``in.jsonl, line``: where those lines are
    truncated_ids: list[Any] = field(default_factory=list)  # the first few, for the summary

    def add(self, stats: dict[str, Any]) -> None:
        for key in ("rows", "written", "skipped", "truncated", "tokens"):
            setattr(self, key, getattr(self, key) + int(stats[key]))
        self.long += int(stats.get("long", 0))
        self.outputs += int(stats.get("outputs", stats["written"]))
        ids = stats.get("truncated_ids") or []
        ids = json.loads(ids) if isinstance(ids, str) else ids  # a Ray stats row: JSON text
        self.truncated_ids += list(ids)[: max(0, SHOWN - len(self.truncated_ids))]
        self.chunks += 1
        room = TRUNCATED_LISTED - len(self.truncated_lines)
        self.truncated_lines += list(stats.get("truncated_lines", ()))[:max(room, 0)]


SHOWN = 5  # truncated ids named in the summary


@dataclass
class Embedded:
    """One chunk of rows embedded: the vectors (one per output row), counts, and, for
    chunk rows, (record index, chunk) per row; rejects-file notes of truncated rows."""

    vectors: np.ndarray
    stats: dict[str, Any]
    chunks: list[tuple[int, Chunk]] | None = None
    notes: list[Reject] = field(default_factory=list)


@dataclass
class Job:
    layout: Layout
    chunk_rows: int
    on_error: str = "error"
    on_long: str = "truncate"
    prompt: str = ""
    titled: Any = None  # title -> prompt (``document_prompt``) when --title-field is set
    state: dict[str, Any] = field(default_factory=dict)
    chunking: ChunkRows | None = None  # --chunk-tokens: one output row per chunk of text


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
    totals = Totals(source=f"{reader.name}, {reader.unit}")
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
        done = embed_chunk(job, model, reader, records, progress, totals.written, span)
        vectors, stats = done.vectors, done.stats
        if calibrating and len(vectors):
            ranges = calibrate(vectors)
            job.state["calibration"] = {"chunk": index, "digest": key, "ranges": ranges,
                                        "rows": len(records)}
            cal = job.state["calibration"]
            work.write_state(job.state)
        stats.update(digest=key, index=index, rows=len(items), skipped=len(rejects))
        part = job.layout.part(records, vectors, ranges, done.chunks)
        notes = sorted([*rejects, *done.notes], key=lambda r: r.row)
        work.write_part(index, part, stats, notes, reader.name)
        totals.add(stats)
    return totals


def embed_chunk(
    job: Job, model: Model, reader: Reader, records: list[Record], progress: ProgressSink,
    saved: int, span: tuple[float | None, float | None] = (None, None),
) -> Embedded:
    """Vectors of one chunk, batched exactly as ``embed_tokens`` batches the chunk."""
    texts = [r.text for r in records]
    prompts = [job.titled(r.title) for r in records] if job.titled else [job.prompt] * len(texts)
    start, end = span[0] or 0.0, span[1]
    progress.begin(start)
    long_model = cast("EmbeddingGemma", model)
    if job.chunking is not None:
        vectors, chunks = embed_chunk_rows(long_model, texts, prompts, job.chunking)
        stats = chunk_stats(records, chunks)
        progress.advance(len(records), stats["tokens"], end)
        return Embedded(vectors, stats, chunks)
    encoded = model.tokenize(texts, prompts)
    truncated = encoded.truncated
    over = [int(i) for i in np.flatnonzero(truncated)]
    lengths_over = [int(encoded.lengths[i]) for i in over]
    if job.on_long == "error" and over:
        first = records[over[0]]
        raise TooLongError(
            f"{reader.where(first.line)} (row {first.row}, id {first.id!r}): text is "
            f"{lengths_over[0]} tokens with its prompt, longer than --max-length "
            f"{model.max_length}", saved)
    whole = job.on_long in ("mean", "late")
    plain = [i for i in range(len(texts)) if not (whole and truncated[i])]
    ids = encoded.ids
    lengths = [len(ids[i]) for i in plain]
    vectors = np.empty((len(ids), job.layout.dimensions), dtype=np.float32)
    # One batch at a time, for progress: embed_tokens plans a sorted batch exactly as
    # it is, so the vectors are the ones a single call on the whole chunk returns (and,
    # as no batch straddles a bound, the ones each text has alone).
    done = 0
    for batch in plan_batches(lengths, model.batch_tokens, bounds=model.bounds):
        rows = [plain[i] for i in batch]
        vectors[rows] = model.embed_tokens([ids[i] for i in rows])
        done += len(batch)
        fraction = None if end is None else start + (end - start) * done / len(ids)
        progress.advance(len(batch), sum(lengths[i] for i in batch), fraction)
    if whole and over:
        vectors[over] = embed_over(long_model, [texts[i] for i in over],
                                   [prompts[i] for i in over], job.on_long)
        progress.advance(len(over), sum(lengths_over), end)
    cut = [] if whole else over
    stats = {"written": len(records), "outputs": len(records), "truncated": len(cut),
             "long": len(over) if whole else 0,
             "tokens": int(sum(lengths) + (sum(lengths_over) if whole else 0)),
             "truncated_ids": [records[i].id for i in cut[:SHOWN]],
             "truncated_lines": [records[i].line for i in cut[:TRUNCATED_LISTED]]}
    notes = truncation_notes(records, cut, [lengths_over[over.index(i)] for i in cut],
                             model.max_length)
    return Embedded(vectors, stats, None, notes)
