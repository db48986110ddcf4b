"""Input files as a stream of records: JSONL, CSV, Parquet and plain text.

Every reader yields :class:`~.records.Record` or :class:`~.records.Reject` items, one
per input row, in input order, holding at most one Parquet batch in memory.  Line
formats are read as bytes and decoded line by line, so invalid UTF-8 is reported on
its own line instead of ending the run; gzip is recognised by its magic bytes
(``.jsonl.gz``, ``.csv.gz``, ``.txt.gz`` and compressed stdin all work); UTF-16 and UTF-32
inputs are refused by their byte-order marks.  Blank lines of JSONL and text files are not
rows.  CSV is read strictly (:mod:`.csvrows`); its header is checked when the reader is
made, so a missing or doubled column fails before any model loads.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TypeVar

from embgemma_plugins.errors import InputError
from embgemma_plugins.jobs.csvrows import CsvRows
from embgemma_plugins.jobs.records import FieldSpec, Record, Reject, extract
from embgemma_plugins.jobs.records import from_json_line as _json

__all__ = ["FORMATS", "STDIN", "InputError", "Reader", "check_encoding", "detect_format",
           "line_item", "strip_line"]
FORMATS = ("jsonl", "csv", "parquet", "text")
_EXTENSIONS = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv",
    ".parquet": "parquet", ".pq": "parquet", ".txt": "text", ".text": "text",
}
STDIN = "-"
T = TypeVar("T")
#: Byte-order marks of encodings whose lines cannot be read as UTF-8 lines.
_FOREIGN = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32",
            b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}


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


def decompressed(raw: IO[bytes], name: str) -> IO[bytes]:
    """``raw``, gunzipped if it starts with gzip's magic bytes; an input in UTF-16 or
    UTF-32 (by its byte-order mark) is refused: its lines are not UTF-8 lines."""
    stream = raw
    peek = getattr(raw, "peek", None)
    if peek is not None and peek(2)[:2] == b"\x1f\x8b":
        stream = gzip.GzipFile(fileobj=raw)  # type: ignore[assignment]
        peek = getattr(stream, "peek", None)
    check_encoding(peek(4)[:4] if peek is not None else b"", name)
    return stream


def check_encoding(head: bytes, name: str) -> None:
    """Refuse an input whose first bytes are a UTF-16 or UTF-32 byte-order mark."""
    for mark, encoding in _FOREIGN.items():
        if head.startswith(mark):
            raise InputError(
                f"{name} is {encoding} text (it starts with a {encoding} byte-order mark); "
                f"convert it to UTF-8, e.g. iconv -f {encoding} -t UTF-8")


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
            try:
                raw = stdin if path == STDIN else open(path, "rb")  # noqa: SIM115
            except OSError as e:
                raise InputError(f"cannot read {path}: {e.strerror or e}") from None
            assert raw is not None
            self._raw = raw
            if path != STDIN:
                self.total = os.fstat(raw.fileno()).st_size
            try:
                self._stream = self._reading(lambda: decompressed(raw, self.name))
                self._csv = (self._reading(lambda: CsvRows(self._stream, self.name, spec))
                             if fmt == "csv" else None)
            except InputError:
                self.close()
                raise

    def _reading(self, step: Callable[[], T]) -> T:
        try:
            return step()
        except (OSError, EOFError) as e:  # truncated gzip, unreadable file
            raise InputError(f"{self.name}: cannot read further: {e}") from e

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
        try:
            if self._csv is not None:
                for item in self._csv:
                    yield item
                    self._rows = self._csv.rows
            else:
                yield from self._lines(self._stream)
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

    def _parquet(self) -> Iterator[Record | Reject]:
        row = 0
        for batch in self._pq.iter_batches(batch_size=1024, columns=self.spec.columns()):
            for data in batch.to_pylist():
                yield extract(data, self.spec, row, row + 1)
                row += 1
                self._rows = row
