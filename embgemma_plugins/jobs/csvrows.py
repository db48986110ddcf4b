"""CSV input, read strictly: every record is a row or a named rejection, never a silent merge.

Python's ``csv`` module is lenient where a batch job must not be: a quote left open swallows
every following line into one field and ends the file without complaint, and a header that
names a column twice silently keeps the last one.  Here:

- the header is read (and checked) when the reader is made, before any model loads: a
  duplicate or missing column name is an :class:`~embgemma_plugins.errors.InputError`;
- records are parsed with ``strict=True`` (``"a"b`` is malformed, not ``ab``); a malformed
  record is rejected on the line where it starts, and the next record is read on;
- a quoted field still open at the end of the file, or longer than :data:`FIELD_LIMIT`
  (so an unclosed quote never holds the rest of a large file in memory), is an
  ``InputError`` naming the line where that field opened;
- lines are split on ``\\n`` and decoded one by one, so invalid UTF-8 is reported on its line.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Iterator

from embgemma_plugins.errors import InputError
from embgemma_plugins.jobs.records import FieldSpec, Record, Reject, from_csv_row

FIELD_LIMIT = 64 << 20  # characters: far beyond any text worth embedding whole
RETAIN = 1 << 20  # characters of the current record kept to find where a field opened
csv.field_size_limit(FIELD_LIMIT)


def _scan(lines: list[str], first: int) -> tuple[int, bool]:
    """Where the last quoted field of ``lines`` opened (counting lines from ``first``) and
    whether it is still open at their end, by the rules of ``csv``'s default dialect."""
    opened, quoted, at_start, after_quote = first, False, True, False
    for number, line in enumerate(lines, start=first):
        for ch in line:
            if quoted:
                if after_quote:  # a quote inside a quoted field: doubled, or the end
                    after_quote = False
                    if ch != '"':
                        quoted = False
                    else:
                        continue
                elif ch == '"':
                    after_quote = True
                    continue
                else:
                    continue
            if ch == '"' and at_start:
                quoted, opened, at_start = True, number, False
            else:
                at_start = ch in ",\r\n"
    if after_quote:  # a quote at the very end closes the field
        quoted = False
    return opened, quoted


def opening_line(lines: list[str], first: int) -> int:
    """The line where the last quoted field of ``lines`` opened."""
    return _scan(lines, first)[0]


def quoted(lines: list[str]) -> bool:
    """Whether ``lines`` end inside a quoted field."""
    return _scan(lines, 0)[1]


def describe(error: csv.Error) -> str:
    if "new-line character" in str(error):
        return ("a carriage return (\\r) inside an unquoted field: quote the field, or end "
                "lines with \\n (not old Mac \\r line ends)")
    return str(error)


class CsvRows:
    """The rows of one CSV stream; the header is read and checked at construction."""

    def __init__(self, stream: Iterable[bytes], name: str, spec: FieldSpec) -> None:
        self.name, self.spec = name, spec
        self.rows = 0
        self._stream = stream
        self._bad: dict[int, int] = {}  # line number -> byte offset of the bad UTF-8
        self._pending: list[str] = []  # lines of the record being read (up to RETAIN)
        self._kept = 0
        self._reader = csv.reader(self._decoded(), strict=True)
        self.header = self._read_header()

    def _decoded(self) -> Iterator[str]:
        for number, data in enumerate(self._stream, start=1):
            if number == 1 and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                self._bad[number] = e.start
                text = data.decode("utf-8", "replace")
            if self._kept < RETAIN:
                self._pending.append(text)
                self._kept += len(text)
            yield text

    def _record_done(self) -> None:
        self._pending.clear()
        self._kept = 0

    def _read_header(self) -> list[str]:
        try:
            header = next(self._reader)
        except StopIteration:
            header = []
        except csv.Error as e:
            raise InputError(f"{self.name}, line 1: unreadable CSV header: {describe(e)}") from e
        self._record_done()
        if not header:
            return header  # an empty file: no rows
        if self._bad:
            raise InputError(f"{self.name}, line 1: the CSV header is not valid UTF-8")
        counts = Counter(h for h in header if h)
        twice = [h for h, n in counts.items() if n > 1]
        if twice:
            where = ", ".join(str(i + 1) for i, h in enumerate(header) if h == twice[0])
            raise InputError(
                f"{self.name}, line 1: the CSV header names column {twice[0]!r} "
                f"{counts[twice[0]]} times (columns {where}); give each column its own name")
        missing = [c for c in self.spec.columns() if c not in header]
        if missing:
            raise InputError(
                f"{self.name}: the CSV header has no column {', '.join(map(repr, missing))} "
                f"(columns: {', '.join(header)})")
        return header

    def _open_field(self, start: int, error: csv.Error) -> InputError:
        line = opening_line(self._pending, start)
        if "end of data" in str(error):
            why = "a quoted field opened on this line is still open at the end of the file"
        elif quoted(self._pending):
            why = f"a quoted field opened on this line runs past {FIELD_LIMIT >> 20} MB"
        else:
            return InputError(f"{self.name}, line {start}: a field longer than "
                              f"{FIELD_LIMIT >> 20} MB")
        return InputError(
            f"{self.name}, line {line}: {why}: a quote that is never closed would swallow "
            "every following line; close it (or double a quote inside a field as \"\")")

    def __iter__(self) -> Iterator[Record | Reject]:
        if not self.header:
            return
        reader, buffer = self._reader, io.StringIO()
        end = reader.line_num
        while True:
            start = end + 1
            values: list[str] | None = None
            error: str | None = None
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                if "end of data" in str(e) or "field limit" in str(e):
                    raise self._open_field(start, e) from None
                error = f"malformed CSV: {describe(e)}"
                if reader.line_num > start:  # say which lines the broken record took
                    error = (f"malformed CSV in the record on lines {start}-{reader.line_num} "
                             f"(a quote opened on line {opening_line(self._pending, start)}): "
                             f"{describe(e)}")
            end = reader.line_num
            if values == []:
                self._record_done()
                continue
            buffer.seek(0)
            buffer.truncate()
            if values is not None:
                csv.writer(buffer, lineterminator="").writerow(values)
            else:  # the record's own lines, as far as they were kept
                buffer.write("".join(self._pending).rstrip("\r\n"))
            self._record_done()
            broken = [n for n in range(start, end + 1) if self._bad.pop(n, None) is not None]
            if broken:
                error = f"invalid UTF-8 on line {broken[0]}"
            if error is not None or values is None:
                yield Reject(self.rows, start, error or "malformed CSV", buffer.getvalue())
            else:
                yield from_csv_row(values, self.header, self.spec, self.rows, start,
                                   buffer.getvalue())
            self.rows += 1
