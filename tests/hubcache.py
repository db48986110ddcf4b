"""A Hugging Face hub cache laid out by hand, exactly as huggingface_hub lays out a downloaded
repository, so that repositories resolve offline by their id in tests:

    <cache>/models--ORG--NAME/blobs/<sha256>               the files' bytes
    <cache>/models--ORG--NAME/snapshots/<commit>/<path>    relative symlinks to the blobs
    <cache>/models--ORG--NAME/refs/main                    the commit of ``main``
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def repo_folder(cache: Path, repo: str) -> Path:
    return cache / f"models--{repo.replace('/', '--')}"


def commit_of(*labels: str) -> str:
    """A 40-hex commit id (deterministic per label)."""
    return hashlib.sha1("/".join(labels).encode()).hexdigest()


def publish(
    folder: Path,
    cache: Path,
    repo: str,
    subfolder: str = "",
    commit: str | None = None,
    main: bool = True,
) -> Path:
    """Put every file of ``folder`` into ``repo`` at ``commit`` (under ``subfolder``), as a
    download would leave it; ``main``: point ``refs/main`` at that commit. Returns the
    snapshot folder of the files."""
    base = repo_folder(cache, repo)
    commit = commit or commit_of(repo)
    snapshot = base / "snapshots" / commit
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = base / "blobs" / hashlib.sha256(data).hexdigest()
        if not blob.exists():
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
        link = snapshot / subfolder / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    if main:
        (base / "refs").mkdir(parents=True, exist_ok=True)
        (base / "refs" / "main").write_text(commit)
    return snapshot / subfolder
