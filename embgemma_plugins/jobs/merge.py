"""Assemble the finished parts into the final file (Parquet or ``.npy``).

Parts are read one at a time, so assembling needs the memory of one chunk however
many rows the output holds.  Parquet outputs get one row group per chunk.  This is
the only module of a run that loads pyarrow (for Parquet outputs), and it runs after
the model has been dropped.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embgemma_plugins.jobs.output import Layout, write_options
from embgemma_plugins.jobs.parts import read_embedding, read_ids, read_part, writing
from embgemma_plugins.jobs.quantise import numpy_type, width


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
        ids, rows = read_ids(path)
        scan.rows += rows
        if not check:
            continue
        hashes.append(np.fromiter((hash(i) for i in ids), dtype=np.int64, count=len(ids)))
    if not check or not hashes:
        return scan
    values, counts = np.unique(np.concatenate(hashes), return_counts=True)
    suspects = set(values[counts > 1].tolist())
    del hashes, values, counts
    if suspects:
        seen: Counter[str] = Counter()
        for path in parts:
            for i in read_ids(path)[0]:
                if hash(i) in suspects:
                    seen[str(i)] += 1
        scan.duplicates = {k: v for k, v in seen.items() if v > 1}
    return scan


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def write_parquet(
    parts: Sequence[Path], tmp: Path, layout: Layout, metadata: dict[str, object]
) -> None:
    """Copy every part into ``tmp`` as one row group each, with the run's ``metadata``."""
    import pyarrow.parquet as pq

    schema = layout.schema(metadata)
    with writing(tmp), pq.ParquetWriter(tmp, schema, **write_options(schema)) as writer:
        for path in parts:
            table = layout.arrow(read_part(path))
            writer.write_table(table, row_group_size=max(1, table.num_rows))
    _fsync(tmp)


def write_npy(parts: Sequence[Path], tmp: Path, rows: int, layout: Layout) -> None:
    """The embeddings of every part as one ``(rows, width)`` array in ``tmp``.

    Written as a stream (header, then each part's bytes), not through a memory map: a
    memory-mapped write into a full disk ends the process with SIGBUS, where a write
    raises ``OSError`` the run can report."""
    dtype = numpy_type(layout.precision)
    shape = (rows, width(layout.precision, layout.dimensions))
    with writing(tmp), open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                "shape": shape})
        written = 0
        for path in parts:
            values = np.ascontiguousarray(read_embedding(path), dtype=dtype)
            f.write(values.tobytes())
            written += len(values)
        if written != rows:
            raise RuntimeError(f"parts hold {written} rows, expected {rows}")
        f.flush()
        os.fsync(f.fileno())


def write_rows(path: Path, tmp: Path, rows: np.ndarray) -> None:
    """``rows`` (int64) as ``.npy`` at ``path``, written as ``tmp`` and renamed."""
    with writing(tmp), open(tmp, "wb") as f:
        np.save(f, rows.astype(np.int64))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def concat_files(sources: Sequence[Path], tmp: Path) -> None:
    """Concatenate text files into ``tmp`` (fsynced)."""
    with writing(tmp), open(tmp, "wb") as dest:
        for path in sources:
            with open(path, "rb") as src:
                while block := src.read(1 << 20):
                    dest.write(block)
        dest.flush()
        os.fsync(dest.fileno())
