"""The model store: one folder per (model, variant) under a cache directory.

``<root>/<model slug>/<variant>/`` holds ``model.onnx`` (+ external data), the
tokenizer, the prompt table and ``manifest.json``.  The root defaults to the
platform's user cache directory and is overridden by ``EMBGEMMA_HOME``.  This
module only looks at folders: it imports neither torch nor onnxruntime.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_cache_dir

from embgemma_plugins.store.manifest import MANIFEST_FILE, Manifest
from embgemma_plugins.unpack4 import SCRATCH  # a load's scratch file is not the variant

ENV_HOME = "EMBGEMMA_HOME"
DEFAULT_MODEL = "google/embeddinggemma-300m"
ONNX_FILE = "model.onnx"


def store_root() -> Path:
    """The store's root folder (``$EMBGEMMA_HOME`` or the user cache directory)."""
    env = os.environ.get(ENV_HOME)
    return Path(env).expanduser() if env else Path(user_cache_dir("embgemma-plugins"))


def model_slug(model: str | Path) -> str:
    """Folder name of a model: ``google--embeddinggemma-300m`` for a hub id; a local
    checkpoint folder gets its name plus a hash of its absolute path."""
    if isinstance(model, Path) or os.path.isdir(model):
        path = Path(model).resolve()
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
        return f"local--{re.sub(r'[^A-Za-z0-9._-]+', '_', path.name)}-{digest}"
    return str(model).strip("/").replace("/", "--")


def variant_dir(model: str | Path, variant: str, root: Path | None = None) -> Path:
    return (root or store_root()) / model_slug(model) / variant


def is_variant_dir(folder: Path) -> bool:
    return (folder / ONNX_FILE).is_file() and (folder / MANIFEST_FILE).is_file()


@dataclass(frozen=True)
class StoredVariant:
    path: Path
    manifest: Manifest

    @property
    def size_bytes(self) -> int:
        files = [p for p in self.path.rglob("*") if p.is_file()]
        return sum(p.stat().st_size for p in files if not p.name.startswith(SCRATCH))


def list_variants(root: Path | None = None) -> list[StoredVariant]:
    """Every complete variant folder in the store, sorted by model and variant."""
    base = root or store_root()
    found = []
    for folder in sorted(base.glob("*/*")):
        if folder.is_dir() and is_variant_dir(folder):
            found.append(StoredVariant(folder, Manifest.read(folder)))
    return found
