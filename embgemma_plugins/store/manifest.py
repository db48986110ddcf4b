"""``manifest.json``: how a variant folder was made, and how faithful it is.

A manifest lets anyone trace a vector back to its source: the checkpoint's repo id
and revision, the recipe, the sha256 of every file in the folder, the package
versions that built it, the prompt table, and the fidelity measured against the
fp32 reference at export time.

It also records the build pipeline's version (``pipeline``) and the digest of the recipe
table it was built by (``recipe_sha256``): a store variant built by an older pipeline, or
by a recipe since changed, is *stale* (:meth:`Manifest.stale`) and is rebuilt before use
where the ``export`` extra is installed (``store/resolve.py``).
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
#: The version of the build pipeline (the passes of ``onnx_models``): raised whenever a
#: change to them changes what a variant computes or carries, so that variants built before
#: it are rebuilt. 0: a manifest that does not say (built before the field existed).
#: 1: length bounds in the graph's metadata (batch invariance) and the ``token_states``
#: output (late chunking).
PIPELINE = 1


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
    pipeline: int = PIPELINE
    recipe_sha256: str | None = None  # registry.recipe_digest of the table it was built by

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
        if isinstance(data, dict):
            data.setdefault("pipeline", 0)  # written before the pipeline was recorded
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

    def stale(self) -> str | None:
        """Why a variant built by this record is out of date, or ``None`` if it is not: built
        by an older build pipeline, or by a recipe table that has since changed."""
        from embgemma_plugins.store.registry import recipe_digest, registry

        if self.pipeline < PIPELINE:
            return (f"it was built by build pipeline {self.pipeline}, and this version of "
                    f"embgemma-plugins builds pipeline {PIPELINE}")
        known = registry().get(self.variant)
        if known and self.recipe_sha256 and self.recipe_sha256 != recipe_digest(known.table):
            return f"its recipe has changed since it was built (recipe {self.recipe_sha256[:12]})"
        return None
