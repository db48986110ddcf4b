"""Real file systems that fail: a small tmpfs (a disk that fills up) and a read-only one.

Mounting needs root (CAP_SYS_ADMIN); where it is refused, the tests that need it skip and
say so.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


@contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size`` (``512k``, ``2m``) mounted at ``path`` while the block runs."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = _mount(["-t", "tmpfs", "-o", options, "tmpfs", str(path)])
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def resize(path: Path, size: str) -> None:
    """Grow (or shrink) the tmpfs at ``path``, keeping its files."""
    done = _mount(["-o", f"remount,size={size}", str(path)])
    assert done.returncode == 0, done.stderr


def everything(path: Path) -> list[str]:
    """Every file and folder under ``path``, hidden ones included, relative, sorted."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))
