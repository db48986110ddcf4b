"""An input file as Ray tasks see it: where it is, which part of it, and its bytes.

:class:`Source` and :class:`Span` are small and picklable: the driver makes them,
read and count tasks receive them and open the file themselves, through pyarrow's
filesystems (local paths, ``s3://``, ``gs://``, ``hdfs://``, ...).
"""

from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass
from typing import IO, Any

import pyarrow.fs as pafs

from embgemma_plugins.jobs.records import FieldSpec


@dataclass(frozen=True)
class Source:
    """An input file (local path or pyarrow filesystem URI) and how to read it."""

    uri: str  # as the user gave it: messages and rejects files name it so
    fmt: str
    spec: FieldSpec
    chunk_rows: int
    location: str = ""  # an absolute path or URI, valid in every worker

    def __post_init__(self) -> None:
        if not self.location:  # resolved where the job is planned, not in a worker's cwd
            absolute = self.uri if "://" in self.uri else os.path.abspath(self.uri)
            object.__setattr__(self, "location", absolute)

    def open(self) -> tuple[pafs.FileSystem, str]:
        if "://" in self.location:
            fs, path = pafs.FileSystem.from_uri(self.location)
            return fs, str(path)
        return pafs.LocalFileSystem(), self.location

    def where(self, line: int) -> str:
        """``data.jsonl, line 12``, as the local reader says it."""
        return f"{self.uri}, {'row' if self.fmt == 'parquet' else 'line'} {line}"


@dataclass(frozen=True)
class Span:
    """Bytes (line files) or rows (Parquet) ``[start, end)`` of the input."""

    start: int
    end: int
    gzip: bool = False
    first_row: int = 0
    first_line: int = 1
    next_row: int | None = None  # the next span's first row; None for the last span


class _Raw(io.RawIOBase):
    """A pyarrow file as a raw Python stream, so it can be buffered and split in lines."""

    def __init__(self, f: Any) -> None:
        self._f = f

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self._f.read(len(b))
        b[: len(data)] = data
        return len(data)


def stream(source: Source, span: Span) -> IO[bytes]:
    fs, path = source.open()
    f = fs.open_input_file(path)
    f.seek(span.start)
    raw: IO[bytes] = io.BufferedReader(_Raw(f), 1 << 20)
    return gzip.GzipFile(fileobj=raw) if span.gzip else raw  # type: ignore[return-value]
