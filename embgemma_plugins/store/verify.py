"""Never a session on damaged weights: a variant folder's files checked against its manifest.

Every file the manifest records is hashed (sha256) the first time the folder is used on a
machine, and again whenever its size or modification time changes; a digest once verified
is remembered in ``<store>/.verified/`` (keyed by the folder's absolute path), so the usual
load only stats the files (measured in docs/reliability.md). A missing or mismatching file
raises :class:`~embgemma_plugins.errors.DamagedModelError` naming it, with the command
that rebuilds or re-downloads the variant.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from embgemma_plugins.errors import DamagedModelError
from embgemma_plugins.store.layout import store_root
from embgemma_plugins.store.manifest import Manifest, sha256_file

STAMPS = ".verified"


@dataclass
class Report:
    """The outcome of checking one folder."""

    folder: Path
    checked: int = 0  # files whose sha256 was computed
    trusted: int = 0  # files whose size and mtime matched an earlier verification
    bad: dict[str, str] = field(default_factory=dict)  # file -> what is wrong


def _stamp_file(folder: Path) -> Path:
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:24]
    return store_root() / STAMPS / f"{key}.json"


def _read_stamps(path: Path) -> dict[str, list[object]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return files if isinstance(files, dict) else {}


def _write_stamps(path: Path, folder: Path, files: dict[str, list[object]]) -> None:
    """Remember verified digests; a read-only store only costs the next load a rehash."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"folder": str(folder.resolve()), "files": files}, sort_keys=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".stamp-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
        os.replace(tmp, path)
    except OSError:
        pass


def check_folder(folder: Path, manifest: Manifest, use_stamps: bool = True) -> Report:
    """Check every file ``manifest`` records in ``folder`` (without raising)."""
    report = Report(folder)
    stamp_path = _stamp_file(folder)
    stamps = _read_stamps(stamp_path) if use_stamps else {}
    verified: dict[str, list[object]] = {}
    for name, digest in sorted(manifest.files.items()):
        path = folder / name
        try:
            st = path.stat()
        except OSError:
            report.bad[name] = "missing"
            continue
        seen = [st.st_size, st.st_mtime_ns, digest]
        if stamps.get(name) == seen:
            report.trusted += 1
            verified[name] = seen
            continue
        report.checked += 1
        if sha256_file(path) != digest:
            report.bad[name] = f"sha256 differs from the manifest ({st.st_size:,} bytes)"
        else:
            verified[name] = seen
    if report.checked and verified != stamps:
        _write_stamps(stamp_path, folder, verified)
    return report


def verify(folder: Path, manifest: Manifest, fix: Callable[[], str]) -> None:
    """Raise :class:`DamagedModelError` unless every recorded file of ``folder`` is intact;
    ``fix()`` gives the command that rebuilds or re-downloads it."""
    report = check_folder(folder, manifest)
    if report.bad:
        listed = "; ".join(f"{name}: {why}" for name, why in report.bad.items())
        raise DamagedModelError(
            f"{folder} is damaged ({listed}); its files do not match its manifest.json, "
            f"so it was not loaded. Replace it with:\n  {fix()}",
            sorted(report.bad),
        )
