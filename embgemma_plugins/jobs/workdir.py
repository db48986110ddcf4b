"""The hidden work folder that makes a run resumable.

``OUT``'s folder gets ``.OUT.embgemma-work/`` holding ``state.json`` (the settings
that decide the output's bytes, and the int8/uint8 calibration) and one part per
finished chunk: ``part-000042.npz`` (:mod:`.parts`) plus, when rows were rejected,
``part-000042.rejects.jsonl``.  Every file is written under a temporary name,
fsynced and renamed, so a part that exists is complete whenever the process dies;
a part's stats record a digest of its chunk's input, so a resumed run reuses a
part only for the very same rows.  The final file is assembled from the parts.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from embgemma_plugins.jobs.parts import PART_SUFFIX, Part, read_stats, write_part, writing
from embgemma_plugins.jobs.records import Reject

STATE_FILE = "state.json"
STATE_VERSION = 1


def work_path(out: Path) -> Path:
    return out.parent / f".{out.name}.embgemma-work"


def temp_path(out: Path) -> Path:
    """Where the final file is assembled before its atomic rename to ``out``."""
    return out.parent / f".{out.name}.tmp"


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with writing(tmp), open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def describe_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``dimensions: was 768, now 256`` for each setting that differs."""
    return [
        f"{key}: was {old.get(key)!r}, now {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]


class WorkDir:
    def __init__(self, out: Path) -> None:
        self.path = work_path(out)

    def exists(self) -> bool:
        return (self.path / STATE_FILE).is_file()

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def read_state(self) -> dict[str, Any]:
        return dict(json.loads((self.path / STATE_FILE).read_text(encoding="utf-8")))

    def write_state(self, state: Mapping[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        body = {"version": STATE_VERSION, **state}
        write_atomic(self.path / STATE_FILE, json.dumps(body, indent=1, sort_keys=True).encode())
        fsync_dir(self.path)

    def part(self, index: int) -> Path:
        return self.path / f"part-{index:06d}{PART_SUFFIX}"

    def rejects(self, index: int) -> Path:
        return self.path / f"part-{index:06d}.rejects.jsonl"

    def finished(self, index: int, digest: str) -> dict[str, Any] | None:
        """The stats of chunk ``index`` if its part exists and was made from ``digest``."""
        path = self.part(index)
        stats = read_stats(path) if path.is_file() else None
        return stats if stats is not None and stats.get("digest") == digest else None

    def write_part(
        self, index: int, part: Part, stats: Mapping[str, Any], rejects: Iterable[Reject],
        source: str,
    ) -> None:
        """Write chunk ``index``: its rejects (if any), then its rows, each atomically."""
        lines = [reject_line(r, source) for r in rejects]
        reject_path = self.rejects(index)
        if lines:
            write_atomic(reject_path, "".join(lines).encode())
        elif reject_path.exists():
            reject_path.unlink()
        write_part(self.part(index), part, stats)
        fsync_dir(self.path)


def saved_hint(work: WorkDir) -> str:
    """The line that tells a failed run's user what it kept (empty when nothing)."""
    parts = len(list(work.path.glob(f"part-*{PART_SUFFIX}"))) if work.path.is_dir() else 0
    return f"\n{parts} finished chunk(s) are kept in {work.path}" if parts else ""


def reject_line(reject: Reject, source: str) -> str:
    """One line of a rejects file (JSONL): where, why, and the offending input."""
    body = {"file": source, "line": reject.line, "row": reject.row, "reason": reject.reason,
            "input": reject.raw}
    if reject.embedded:  # a truncated row: in OUT, cut to the window
        body["embedded"] = True
    return json.dumps(body, ensure_ascii=False) + "\n"
