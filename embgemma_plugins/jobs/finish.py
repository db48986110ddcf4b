"""The end of a run: assemble the parts, then make ``OUT`` appear by one rename.

Order matters for "never lose a row": the final file and the rejects file are
written under temporary names and fsynced; the rejects file is renamed first, then
``OUT``; only then is the work folder removed.  A kill at any point leaves either
no ``OUT`` and a resumable work folder, or the complete ``OUT``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embgemma_plugins.jobs.merge import concat_files, scan_ids, write_npy, write_parquet
from embgemma_plugins.jobs.output import Layout, encode_metadata
from embgemma_plugins.jobs.workdir import WorkDir, fsync_dir, temp_path, write_atomic


@dataclass
class Finished:
    rows: int
    duplicates: dict[str, int] = field(default_factory=dict)
    rejects: Path | None = None


def sidecar(out: Path) -> Path:
    """Metadata file written beside a ``.npy`` output (``vectors.npy.json``)."""
    return out.with_name(out.name + ".json")


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
    if out.suffix.lower() == ".npy":
        write_npy(parts, tmp, scan.rows, layout)
        write_atomic(sidecar(out), encode_metadata(metadata) + b"\n")
    else:
        write_parquet(parts, tmp, layout, metadata)
    rejected = [work.rejects(i) for i in range(chunks) if work.rejects(i).is_file()]
    if rejects is not None:
        if rejected:
            staging = rejects.with_name(f".{rejects.name}.tmp")
            concat_files(rejected, staging)
            os.replace(staging, rejects)
        elif rejects.exists():
            rejects.unlink()  # a stale file of an earlier run would be misleading
    state = work.read_state()
    state["assembled"] = True
    work.write_state(state)
    os.replace(tmp, out)
    fsync_dir(out.parent)
    work.remove()
    return Finished(scan.rows, scan.duplicates, rejects if rejected else None)


def leftover(out: Path, work: WorkDir) -> bool:
    """A work folder left by a run killed after ``OUT`` was renamed into place."""
    if not (out.exists() and work.exists()):
        return False
    try:
        return bool(work.read_state().get("assembled"))
    except (OSError, json.JSONDecodeError):
        return False
