"""One input file cut into spans that Ray tasks read in parallel, chunk by chunk.

The local engine numbers rows from 0 and cuts them into chunks of ``chunk_rows``
rows (rejected rows included); ids without ``--id-field`` are those row numbers and
each chunk is batched on its own.  To give the same ids and the same vectors, every
span must know the number of its first row, and every chunk must be read whole by
one task.  So:

- a line file (JSONL or text, not gzipped) is cut at line starts every
  ``SPAN_BYTES``; a gzipped one is a single span (it cannot be entered midway);
  Parquet is cut at chunk boundaries by the row counts of its footer;
- a counting pass (one cheap task per span) gives each span's lines and rows, and
  prefix sums give its first row and line number;
- span ``i`` yields the chunks whose first row falls inside it, reading past its
  end to finish its last chunk, and skipping the rows of a chunk begun before it.

Lines are parsed by :func:`~embgemma_plugins.jobs.readers.line_item`, Parquet rows by
:func:`~embgemma_plugins.jobs.records.extract`: the local reader's own rules.
No Ray here, so all of this is tested without a cluster.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TypeAlias

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from embgemma_plugins.jobs.readers import InputError, check_encoding, line_item, strip_line
from embgemma_plugins.jobs.records import Record, Reject, extract
from embgemma_plugins.ray.source import Source, Span, stream

__all__ = ["InputError", "Source", "Span", "count", "number", "plan", "read", "total_rows"]

SPAN_BYTES = 32 << 20  # bytes of a line file per read task
SPAN_CHUNKS = 64  # chunks of a Parquet file per read task
FORMATS = ("jsonl", "text", "parquet")
Item: TypeAlias = Record | Reject


def plan(source: Source, span_bytes: int | None = None) -> list[Span]:
    """Spans of the input, not yet numbered (Parquet spans are: its footer counts rows)."""
    span_bytes = span_bytes or SPAN_BYTES
    if source.fmt not in FORMATS:
        raise InputError(f"the Ray engine reads {', '.join(FORMATS)}, not {source.fmt}")
    fs, path = source.open()
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        raise InputError(f"input {source.uri} does not exist or is not a file")
    if source.fmt == "parquet":
        return _parquet_plan(source, fs, path)
    if source.fmt == "text" and (source.spec.id or source.spec.title or source.spec.keep):
        raise InputError("plain text input has no fields: drop --id-field/--title-field/--keep")
    size = int(info.size or 0)
    with fs.open_input_file(path) as f:
        head = f.read(4)
        zipped = head[:2] == b"\x1f\x8b"
        if not zipped:
            check_encoding(head, source.uri)
        if zipped or size <= span_bytes:
            return [Span(0, size, zipped)]
        starts = [0]
        for b in range(span_bytes, size, span_bytes):
            f.seek(b - 1)
            at = b - 1
            while True:  # the first line start at or after b
                block = f.read(1 << 16)
                if not block:
                    at = size
                    break
                newline = block.find(b"\n")
                if newline >= 0:
                    at += newline + 1
                    break
                at += len(block)
            if starts[-1] < at < size:
                starts.append(at)
    return [Span(s, e) for s, e in zip(starts, [*starts[1:], size], strict=True)]


def _parquet_plan(source: Source, fs: pafs.FileSystem, path: str) -> list[Span]:
    try:
        pf = pq.ParquetFile(fs.open_input_file(path))
    except Exception as e:  # pyarrow raises several types for a bad file
        raise InputError(f"{source.uri} is not a readable Parquet file: {e}") from e
    names = pf.schema_arrow.names
    missing = [c for c in source.spec.columns() if c not in names]
    if missing:
        raise InputError(f"{source.uri} has no column {', '.join(map(repr, missing))} "
                         f"(columns: {', '.join(names)})")
    total = pf.metadata.num_rows
    step = SPAN_CHUNKS * source.chunk_rows
    starts = list(range(0, total, step)) or [0]
    ends = [*starts[1:], total]
    return [Span(s, e, False, s, s + 1, None if e >= total else e)
            for s, e in zip(starts, ends, strict=True)]


def count(source: Source, span: Span) -> tuple[int, int]:
    """``(lines, rows)`` of a line-file span: lines end in ``\\n``; blank lines are no rows."""
    lines = rows = 0
    at, end = span.start, None if span.gzip else span.end
    with stream(source, span) as lines_of:
        for data in lines_of:
            if end is not None and at >= end:
                break
            # only line 1 of the file may carry a BOM
            first = span.start == 0 and lines == 0
            at += len(data)
            lines += 1
            if strip_line(data, 1 if first else 2).strip():
                rows += 1
    return lines, rows


def number(spans: Sequence[Span], counts: Sequence[tuple[int, int]]) -> list[Span]:
    """Spans with their first row and line, from the ``count`` of each."""
    out: list[Span] = []
    row, line = 0, 1
    firsts = []
    for lines, rows in counts:
        firsts.append((row, line))
        row, line = row + rows, line + lines
    for i, span in enumerate(spans):
        nxt = firsts[i + 1][0] if i + 1 < len(spans) else None
        out.append(replace(span, first_row=firsts[i][0], first_line=firsts[i][1], next_row=nxt))
    return out


def total_rows(spans: Sequence[Span], counts: Sequence[tuple[int, int]]) -> int:
    return sum(rows for _lines, rows in counts) if counts else spans[-1].end


def read(source: Source, span: Span, lo: int = 0, hi: int | None = None
         ) -> Iterator[tuple[int, list[Item]]]:
    """``(chunk index, items)`` of each chunk that begins in ``span``, if ``lo <= index < hi``."""
    rows = _parquet_items(source, span) if source.fmt == "parquet" else _line_items(source, span)
    size = source.chunk_rows
    chunk: list[Item] = []
    index = 0
    for row, item in rows:
        if row % size == 0 and chunk:
            yield index, chunk
            chunk = []
        if item is None:  # a row of a chunk that an earlier span reads
            continue
        if row % size == 0 and ((span.next_row is not None and row >= span.next_row)
                                or (hi is not None and row // size >= hi)):
            return
        if row // size >= lo:
            index = row // size
            chunk.append(item)
    if chunk:
        yield index, chunk


def _line_items(source: Source, span: Span) -> Iterator[tuple[int, Item | None]]:
    """``(row, item)`` from the span's first row on; rows of an earlier chunk are not
    parsed (``item`` is ``None``) since only their count matters."""
    size = source.chunk_rows
    first_kept = -(-span.first_row // size) * size
    row, line = span.first_row, span.first_line
    with stream(source, span) as lines_of:
        for data in lines_of:
            if row < first_kept:
                if strip_line(data, line).strip():
                    yield row, None
                    row += 1
            else:
                item = line_item(data, line, row, source.fmt, source.spec)
                if item is not None:
                    yield row, item
                    row += 1
            line += 1


def _parquet_items(source: Source, span: Span) -> Iterator[tuple[int, Item | None]]:
    fs, path = source.open()
    pf = pq.ParquetFile(fs.open_input_file(path))
    row = 0
    for group in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(group).num_rows
        if row + n <= span.start:
            row += n
            continue
        if row >= span.end:
            return
        table = pf.read_row_group(group, columns=source.spec.columns())
        lo, hi = max(span.start - row, 0), min(span.end - row, n)
        for offset, data in enumerate(table.slice(lo, hi - lo).to_pylist()):
            at = row + lo + offset
            yield at, extract(data, source.spec, at, at + 1)
        row += n
