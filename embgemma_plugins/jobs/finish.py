"""The end of a run: assemble the parts, then make ``OUT`` appear by one rename.

Order matters for "never lose a row": the final file and the rejects file are
written under temporary names and fsynced; the rejects file is renamed first, then
``OUT``; only then is the work folder removed.  A kill at any point leaves either
no ``OUT`` and a resumable work folder, or the complete ``OUT``.

A ``.npy`` output holds vectors only, so when rows were skipped, vector ``i`` is no longer
input row ``i``: the input row of every vector is then written beside it as
``OUT.rows.npy`` (int64, one per vector), and the sidecar and the summary say so.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embgemma_plugins.jobs.merge import (
    concat_files,
    scan_ids,
    write_npy,
    write_parquet,
    write_rows,
)
from embgemma_plugins.jobs.output import Layout, encode_metadata
from embgemma_plugins.jobs.parts import read_stats
from embgemma_plugins.jobs.workdir import WorkDir, fsync_dir, temp_path, write_atomic


@dataclass
class Finished:
    rows: int
    duplicates: dict[str, int] = field(default_factory=dict)
    rejects: Path | None = None
    row_map: Path | None = None  # ``.npy`` outputs with skipped rows: OUT.rows.npy


def sidecar(out: Path) -> Path:
    """Metadata file written beside a ``.npy`` output (``vectors.npy.json``)."""
    return out.with_name(out.name + ".json")


def row_map_path(out: Path) -> Path:
    """The input row of each vector of a ``.npy`` output that skipped rows."""
    return out.with_name(out.name + ".rows.npy")


def staging(path: Path) -> Path:
    """Where a file beside ``OUT`` is written before its rename."""
    return path.with_name(f".{path.name}.tmp")


def kept_rows(work: WorkDir, chunks: int) -> np.ndarray:
    """The input row number of every output row: each chunk's rows minus its rejects."""
    kept, first = [], 0
    for index in range(chunks):
        stats = read_stats(work.part(index)) or {}
        rows = np.arange(first, first + int(stats.get("rows", 0)), dtype=np.int64)
        path = work.rejects(index)
        if path.is_file():
            with open(path, encoding="utf-8") as f:
                gone = [json.loads(line)["row"] for line in f if line.strip()]
            rows = np.setdiff1d(rows, np.asarray(gone, dtype=np.int64), assume_unique=True)
        kept.append(rows)
        first += int(stats.get("rows", 0))
    return np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)


def finish(
    out: Path, work: WorkDir, chunks: int, layout: Layout, metadata: dict[str, Any],
    rejects: Path | None,
) -> Finished:
    parts = [work.part(i) for i in range(chunks)]
    missing = [p.name for p in parts if not p.is_file()]
    if missing:  # cannot happen unless someone deletes parts under a running job
        raise RuntimeError(f"parts missing from {work.path}: {', '.join(missing[:5])}")
    scan = scan_ids(parts, check=layout.spec.id is not None)
    metadata["rows"] = scan.rows
    metadata["duplicate_ids"] = len(scan.duplicates)
    tmp = temp_path(out)
    row_map = None
    if out.suffix.lower() == ".npy":
        if any(work.rejects(i).is_file() for i in range(chunks)):
            row_map = row_map_path(out)
        metadata["row_map"] = row_map.name if row_map else None
        write_npy(parts, tmp, scan.rows, layout)
        if row_map is not None:
            rows = kept_rows(work, chunks)
            if len(rows) != scan.rows:
                raise RuntimeError(f"{len(rows)} row numbers for {scan.rows} vectors")
            write_rows(row_map, staging(row_map), rows)
        elif row_map_path(out).exists():
            row_map_path(out).unlink()  # a stale map of an earlier run would misalign this one
        write_atomic(sidecar(out), encode_metadata(metadata) + b"\n")
    else:
        write_parquet(parts, tmp, layout, metadata)
    rejected = [work.rejects(i) for i in range(chunks) if work.rejects(i).is_file()]
    if rejects is not None:
        if rejected:
            concat_files(rejected, staging(rejects))
            os.replace(staging(rejects), rejects)
        elif rejects.exists():
            rejects.unlink()  # a stale file of an earlier run would be misleading
    state = work.read_state()
    state["assembled"] = True
    work.write_state(state)
    os.replace(tmp, out)
    fsync_dir(out.parent)
    work.remove()
    return Finished(scan.rows, scan.duplicates, rejects if rejected else None, row_map)


def leftover(out: Path, work: WorkDir) -> bool:
    """A work folder left by a run killed after ``OUT`` was renamed into place."""
    if not (out.exists() and work.exists()):
        return False
    try:
        return bool(work.read_state().get("assembled"))
    except (OSError, json.JSONDecodeError):
        return False
