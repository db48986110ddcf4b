"""A run that fails or is interrupted: clean up, keep what is finished, say how to go on.

Every temporary file a run writes (a part, the state, the final file, the sidecar, the
rejects file, the row map: all ``*.tmp`` until renamed) is removed; the finished parts stay
for ``--resume``, unless there are none: then the work folder goes too, so that the next
run, with any options, starts afresh instead of finding "an interrupted run".  Each failure
becomes one error whose message names what failed, what was kept and the command to go on.
"""

from __future__ import annotations

import contextlib
import errno
from pathlib import Path

from embgemma_plugins.errors import (
    EmbeddingGemmaError,
    InputError,
    InvalidArgumentError,
    JobError,
    JobInterrupted,
    RowError,
    TooLongError,
)
from embgemma_plugins.jobs.finish import row_map_path, sidecar, staging
from embgemma_plugins.jobs.parts import PART_SUFFIX
from embgemma_plugins.jobs.workdir import WorkDir, temp_path
from embgemma_plugins.tokenizer import MAX_LENGTH

__all__ = ["clean_up", "explain"]


def clean_up(out: Path, work: WorkDir, rejects: Path | None) -> int:
    """Remove the run's temporary files (and its work folder if no chunk is finished);
    the number of finished chunks kept."""
    doomed = [temp_path(out), sidecar(out).with_name(sidecar(out).name + ".tmp"),
              staging(row_map_path(out))]
    if rejects is not None:
        doomed.append(staging(rejects))
    if work.path.is_dir():
        doomed += list(work.path.glob("*.tmp"))
    for path in doomed:
        with contextlib.suppress(OSError):
            path.unlink()
    parts = len(list(work.path.glob(f"part-*{PART_SUFFIX}"))) if work.path.is_dir() else 0
    if not parts:
        work.remove()
    return parts


def _kept(parts: int, work: WorkDir) -> str:
    return f"{parts} finished chunk(s) are kept in {work.path}" if parts else ""


def _go_on(parts: int, work: WorkDir, fix: str, options: str = "") -> str:
    """``N finished chunk(s) are kept in W; FIX and rerun the same command with --resume``."""
    if parts:
        return f"\n{_kept(parts, work)}; {fix} and rerun the same command with --resume{options}"
    return f"\nnothing was kept; {fix} and rerun the same command{options}"


def _io_failure(e: OSError, out: Path) -> tuple[str, str]:
    """What failed, and what to do about it, for an ``OSError`` of the run's files."""
    reason = e.strerror or str(e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        what = f"cannot write {e.filename}" if e.filename else f"cannot write {out.name}"
        return f"{what}: {reason} (the disk holding {out.parent} is full)", "make room"
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        what = f"cannot write {e.filename}" if e.filename else f"cannot write {out.name}"
        return f"{what}: {reason}", f"make {out.parent} writable"
    return f"{e.filename or out.name}: {reason}", "fix that"


def explain(e: BaseException, out: Path, work: WorkDir, rejects: Path | None,
            on_error: str, max_length: int) -> BaseException:
    """The error to raise for ``e``, after :func:`clean_up` (misuse is left as it is, and so
    is an exception that is no failure of the run: a bug keeps its traceback)."""
    if isinstance(e, InvalidArgumentError):
        return e
    parts = clean_up(out, work, rejects)
    if isinstance(e, KeyboardInterrupt):
        if parts:
            return JobInterrupted(f"interrupted; {_kept(parts, work)}; rerun the same command "
                                  "with --resume to go on")
        return JobInterrupted("interrupted before the first chunk was finished; nothing was kept")
    if isinstance(e, TooLongError):
        larger = (f", or start over with a --max-length above {max_length} (at most "
                  f"{MAX_LENGTH}) and --overwrite" if max_length < MAX_LENGTH else "")
        if parts:
            return TooLongError(f"{e}\n{_kept(parts, work)}; rerun the same command with "
                                f"--resume --on-long truncate to cut such texts{larger}",
                                e.saved_rows)
        return TooLongError(f"{e}\nrerun with --on-long truncate to cut such texts{larger}",
                            e.saved_rows)
    if isinstance(e, RowError):
        skip = "" if on_error == "skip" else (
            f" (or with --on-error skip added, to list such rows in {rejects} and go on)")
        return RowError(f"{e}{_go_on(parts, work, 'fix the input', skip)}", e.saved_rows)
    if isinstance(e, InputError):
        return InputError(f"{e}{_go_on(parts, work, 'fix the input')}")
    if isinstance(e, OSError):
        what, fix = _io_failure(e, out)
        return JobError(f"{what}{_go_on(parts, work, fix)}")
    if isinstance(e, EmbeddingGemmaError) and parts:
        return JobError(f"{e}\n{_kept(parts, work)}; rerun the same command with --resume "
                        "once that is fixed")
    return e
