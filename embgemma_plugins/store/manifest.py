"""``manifest.json``: how a variant folder was made, and how faithful it is.

A manifest lets anyone trace a vector back to its source: the checkpoint's repo id
and revision, the recipe, the sha256 of every file in the folder, the package
versions that built it, the prompt table, and the fidelity measured against the
fp32 reference at export time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from embgemma_plugins.errors import ModelNotFoundError

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class Manifest:
    """The record of one variant folder (see the module docstring)."""

    model_id: str
    revision: str | None
    variant: str
    recipe: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    prompts: dict[str, str] = field(default_factory=dict)
    fidelity: dict[str, Any] | None = None
    build: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False, sort_keys=True) + "\n"

    def write(self, folder: Path) -> Path:
        path = folder / MANIFEST_FILE
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelNotFoundError(f"{path} does not exist") from None
        except json.JSONDecodeError as e:
            raise ModelNotFoundError(f"{path} is not valid JSON: {e}") from None
        known = set(cls.__dataclass_fields__)
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as e:
            raise ModelNotFoundError(f"{path} lacks required fields: {e}") from None

    def record_files(self, folder: Path) -> None:
        """Hash every file of ``folder`` except the manifest itself."""
        self.files = {
            p.relative_to(folder).as_posix(): sha256_file(p)
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST_FILE
        }

    def verify(self, folder: Path) -> list[str]:
        """Files that are missing or whose sha256 differs from the record."""
        bad = []
        for name, digest in self.files.items():
            path = folder / name
            if not path.is_file() or sha256_file(path) != digest:
                bad.append(name)
        return bad
