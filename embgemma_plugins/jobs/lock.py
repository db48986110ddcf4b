"""One run per OUT: a lock beside OUT, held from before the work folder is touched to the end.

``.OUT.embgemma-lock`` is a :mod:`filelock` lock (``flock`` on POSIX, so the kernel drops it
the moment its process dies, however it dies); ``.OUT.embgemma-run.json`` beside it names
the holder (pid, host, start time, command) for the message a second run gives.  A second
run on the same OUT, with ``--overwrite`` or ``--resume`` or neither, fails at once instead
of deleting or mixing the first run's chunks.  A lock left by a killed run is free again,
so the next run simply takes it (and says whose it was).  Both files are removed when the
run ends; the lock file is unlinked while still held (filelock 4 notices an unlinked
inode and retries, so no two holders can come of it).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from filelock import FileLock, Timeout

from embgemma_plugins.errors import JobError


def lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.embgemma-lock"


def owner_path(out: Path) -> Path:
    return out.parent / f".{out.name}.embgemma-run.json"


def read_owner(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_owner(owner: dict[str, Any] | None) -> str:
    """``pid 4242 on host, started 2026-12-06 13:45:02`` (or why it is not known)."""
    if owner is None:
        return "its details are not written yet"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(owner.get("started", 0))))
    return f"pid {owner.get('pid')} on {owner.get('host')}, started {started}"


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


class OutLock:
    """``with OutLock(out, say):`` holds OUT for one run; raises :class:`JobError` if taken."""

    def __init__(self, out: Path, say: Callable[[str], None] | None = None) -> None:
        self.out = out
        self.path = lock_path(out)
        self.owner = owner_path(out)
        self.say = say or (lambda _m: None)
        self._lock = FileLock(str(self.path), timeout=0)

    def __enter__(self) -> OutLock:
        try:
            self._lock.acquire()
        except Timeout:
            other = self._holder()
            command = f": {other['command']}" if other and other.get("command") else ""
            raise JobError(
                f"{self.out} is being written by another run ({describe_owner(other)}{command}); "
                "wait for it to finish, or stop it and rerun with --resume") from None
        except OSError as e:
            raise JobError(f"cannot lock {self.out}: {self.path}: {e.strerror or e}") from None
        previous = read_owner(self.owner)
        if previous is not None:
            self.say(f"embgemma: taking over {self.out} from a run that ended without "
                     f"releasing it ({describe_owner(previous)})")
        body = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "command": " ".join(["embgemma", *sys.argv[1:]])}
        tmp = self.owner.with_name(self.owner.name + ".tmp")
        try:
            tmp.write_text(json.dumps(body), encoding="utf-8")
            os.replace(tmp, self.owner)
        except OSError as e:
            self._release()
            raise JobError(f"cannot write {self.owner}: {e.strerror or e}") from None
        return self

    def _holder(self, patience: float = 2.0) -> dict[str, Any] | None:
        """The holder's details; a holder that has just taken the lock writes them a moment
        later (until then the file names nobody, or a run that is gone)."""
        deadline = time.monotonic() + patience
        while True:
            owner = read_owner(self.owner)
            if owner is not None and (owner.get("host") != socket.gethostname()
                                      or alive(int(owner.get("pid", 0)))):
                return owner
            if time.monotonic() > deadline:
                return owner
            time.sleep(0.05)

    def _release(self) -> None:
        for path in (self.owner.with_name(self.owner.name + ".tmp"), self.owner, self.path):
            with contextlib.suppress(OSError):
                path.unlink()
        self._lock.release()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._release()
