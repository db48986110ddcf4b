"""Assemble the finished parts into the final file (Parquet or ``.npy``).

Parts are read one at a time, so assembling needs the memory of one chunk however
many rows the output holds.  Parquet outputs get one row group per chunk.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embgemma_plugins.cli.output import write_options


@dataclass
class IdScan:
    """Rows in the parts and the ids that occur more than once."""

    rows: int = 0
    duplicates: dict[str, int] = field(default_factory=dict)  # id -> occurrences


def scan_ids(parts: Sequence[Path], check: bool) -> IdScan:
    """Count rows and, if ``check``, find duplicate ids with 8 bytes of memory per row."""
    scan = IdScan()
    hashes: list[np.ndarray] = []
    for path in parts:
        if not check:
            scan.rows += pq.read_metadata(path).num_rows
            continue
        ids = pq.read_table(path, columns=["id"]).column(0).to_pylist()
        scan.rows += len(ids)
        hashes.append(np.fromiter((hash(i) for i in ids), dtype=np.int64, count=len(ids)))
    if not check or not hashes:
        return scan
    values, counts = np.unique(np.concatenate(hashes), return_counts=True)
    suspects = set(values[counts > 1].tolist())
    del hashes, values, counts
    if suspects:
        seen: Counter[str] = Counter()
        for path in parts:
            for i in pq.read_table(path, columns=["id"]).column(0).to_pylist():
                if hash(i) in suspects:
                    seen[str(i)] += 1
        scan.duplicates = {k: v for k, v in seen.items() if v > 1}
    return scan


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def write_parquet(parts: Sequence[Path], tmp: Path, schema: pa.Schema) -> None:
    """Copy every part into ``tmp`` as one row group each, with ``schema``'s metadata."""
    with pq.ParquetWriter(tmp, schema, **write_options(schema)) as writer:
        for path in parts:
            table = pq.read_table(path, use_threads=False).replace_schema_metadata(schema.metadata)
            writer.write_table(table, row_group_size=max(1, table.num_rows))
    _fsync(tmp)


def write_npy(parts: Sequence[Path], tmp: Path, rows: int, schema: pa.Schema) -> None:
    """The ``embedding`` column of every part as one ``(rows, width)`` array in ``tmp``."""
    kind = schema.field("embedding").type
    dtype = np.dtype(kind.value_type.to_pandas_dtype())
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(rows, kind.list_size))
    at = 0
    for path in parts:
        column = pq.read_table(path, columns=["embedding"]).column(0).combine_chunks()
        n = len(column)
        flat = column.values.to_numpy(zero_copy_only=False)
        out[at : at + n] = flat.reshape(n, kind.list_size)
        at += n
    out.flush()
    del out
    _fsync(tmp)


def concat_files(sources: Sequence[Path], tmp: Path) -> None:
    """Concatenate text files into ``tmp`` (fsynced)."""
    with open(tmp, "wb") as dest:
        for path in sources:
            with open(path, "rb") as src:
                while block := src.read(1 << 20):
                    dest.write(block)
        dest.flush()
        os.fsync(dest.fileno())
