"""Input files as a stream of records: JSONL, CSV, Parquet and plain text.

Every reader yields :class:`~.records.Record` or :class:`~.records.Reject` items, one
per input row, in input order, holding at most one Parquet batch in memory.  Line
formats are read as bytes and decoded line by line, so invalid UTF-8 is reported on
its own line instead of ending the run; gzip is recognised by its magic bytes
(``.jsonl.gz``, ``.csv.gz``, ``.txt.gz`` and compressed stdin all work).  Blank lines
of JSONL and text files are not rows.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from embgemma_plugins.errors import InputError
from embgemma_plugins.jobs.records import FieldSpec, Record, Reject, extract, from_csv_row
from embgemma_plugins.jobs.records import from_json_line as _json

__all__ = ["FORMATS", "STDIN", "InputError", "Reader", "detect_format", "line_item", "strip_line"]
FORMATS = ("jsonl", "csv", "parquet", "text")
_EXTENSIONS = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv",
    ".parquet": "parquet", ".pq": "parquet", ".txt": "text", ".text": "text",
}
STDIN = "-"
csv.field_size_limit(2**31 - 1)


def detect_format(path: str, given: str | None) -> str:
    """The format named by ``--format`` or by the file's extension (``.gz`` ignored)."""
    if given:
        return given
    if path == STDIN:
        raise InputError("cannot tell the format of stdin; add --format jsonl|csv|text")
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    fmt = _EXTENSIONS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise InputError(
            f"cannot tell the format of {path} from its extension; add --format "
            f"({', '.join(FORMATS)})"
        )
    return fmt


def strip_line(data: bytes, number: int) -> bytes:
    """A raw input line without its line end (and, on line 1, without a UTF-8 BOM)."""
    data = data.rstrip(b"\r\n")
    if number == 1 and data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data


def line_item(
    data: bytes, number: int, row: int, fmt: str, spec: FieldSpec
) -> Record | Reject | None:
    """The item of line ``number`` of a JSONL or text input (``None``: a blank line,
    which is not a row).  Module-level so the Ray engine reads spans of a file with
    the very rules of :class:`Reader`."""
    data = strip_line(data, number)
    if not data.strip():
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = data.decode("utf-8", "replace")
        return Reject(row, number, f"invalid UTF-8 at byte {e.start + 1} of the line", bad)
    if fmt == "text":
        return extract({spec.text: text}, spec, row, number, text)
    return _json(text, spec, row, number)


class Reader:
    """Rows of one input; :meth:`progress` is the fraction read so far (or ``None``)."""

    def __init__(self, path: str, fmt: str, spec: FieldSpec, stdin: IO[bytes] | None = None):
        self.path, self.fmt, self.spec = path, fmt, spec
        self.name = "stdin" if path == STDIN else path
        self.unit = "row" if fmt == "parquet" else "line"
        self.total: int | None = None
        self._rows = 0
        self._raw: IO[bytes] | None = None
        if fmt == "parquet":
            if path == STDIN:
                raise InputError("Parquet cannot be read from stdin; give a file path")
            import pyarrow.parquet as pq

            try:
                self._pq = pq.ParquetFile(path)
            except Exception as e:  # pyarrow raises several types for a bad file
                raise InputError(f"{path} is not a readable Parquet file: {e}") from e
            names = self._pq.schema_arrow.names
            missing = [c for c in spec.columns() if c not in names]
            if missing:
                raise InputError(
                    f"{path} has no column {', '.join(map(repr, missing))} "
                    f"(columns: {', '.join(names)})"
                )
            self.total = self._pq.metadata.num_rows
        elif fmt == "text" and (spec.id or spec.title or spec.keep):
            raise InputError("plain text input has no fields: drop --id-field/--title-field/--keep")
        else:
            raw = stdin if path == STDIN else open(path, "rb")  # noqa: SIM115
            assert raw is not None
            self._raw = raw
            if path != STDIN:
                self.total = os.fstat(raw.fileno()).st_size

    def where(self, line: int) -> str:
        """``data.jsonl, line 12``: a location in the input for messages."""
        return f"{self.name}, {self.unit} {line}"

    def progress(self) -> float | None:
        if not self.total:
            return None
        if self._raw is not None:
            try:
                return min(1.0, self._raw.tell() / self.total)
            except (OSError, ValueError):
                return None
        return min(1.0, self._rows / self.total)

    def close(self) -> None:
        if self._raw is not None and self.path != STDIN:
            self._raw.close()

    def __iter__(self) -> Iterator[Record | Reject]:
        self._rows = 0
        if self.fmt == "parquet":
            yield from self._parquet()
            return
        assert self._raw is not None
        stream: IO[bytes] = self._raw
        peek = getattr(stream, "peek", None)
        if peek is not None and peek(2)[:2] == b"\x1f\x8b":
            stream = gzip.GzipFile(fileobj=stream)  # type: ignore[assignment]
        try:
            yield from self._csv(stream) if self.fmt == "csv" else self._lines(stream)
        except (OSError, EOFError) as e:  # truncated gzip, unreadable file
            raise InputError(f"{self.name}: cannot read further: {e}") from e

    def _lines(self, stream: IO[bytes]) -> Iterator[Record | Reject]:
        row = 0
        for number, data in enumerate(stream, start=1):
            item = line_item(data, number, row, self.fmt, self.spec)
            if item is None:
                continue
            yield item
            row += 1
            self._rows = row

    def _csv(self, stream: IO[bytes]) -> Iterator[Record | Reject]:
        bad_lines: dict[int, int] = {}  # line number -> byte offset of the bad UTF-8

        def decoded() -> Iterator[str]:
            for number, data in enumerate(stream, start=1):
                if number == 1 and data.startswith(b"\xef\xbb\xbf"):
                    data = data[3:]
                try:
                    yield data.decode("utf-8")
                except UnicodeDecodeError as e:
                    bad_lines[number] = e.start
                    yield data.decode("utf-8", "replace")

        reader = csv.reader(decoded())
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise InputError(f"{self.name}: unreadable CSV header: {e}") from e
        if bad_lines:
            raise InputError(f"{self.where(1)}: the CSV header is not valid UTF-8")
        missing = [c for c in self.spec.columns() if c not in header]
        if missing:
            raise InputError(
                f"{self.name}: the CSV header has no column {', '.join(map(repr, missing))} "
                f"(columns: {', '.join(header)})"
            )
        row, end = 0, reader.line_num
        buffer = io.StringIO()
        while True:
            start = end + 1
            values: list[str] | None
            error: str | None
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                values, error = None, f"malformed CSV: {e}"
            else:
                error = None
            end = reader.line_num
            if values == []:
                continue
            buffer.seek(0)
            buffer.truncate()
            if values is not None:
                csv.writer(buffer, lineterminator="").writerow(values)
            raw = buffer.getvalue()
            broken = [n for n in range(start, end + 1) if bad_lines.pop(n, None) is not None]
            if broken:
                error = f"invalid UTF-8 on line {broken[0]}"
            if error is not None or values is None:
                yield Reject(row, start, error or "malformed CSV", raw)
            else:
                yield from_csv_row(values, header, self.spec, row, start, raw)
            row += 1
            self._rows = row

    def _parquet(self) -> Iterator[Record | Reject]:
        row = 0
        for batch in self._pq.iter_batches(batch_size=1024, columns=self.spec.columns()):
            for data in batch.to_pylist():
                yield extract(data, self.spec, row, row + 1)
                row += 1
                self._rows = row
