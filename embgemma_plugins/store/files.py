"""A loadable model's files, checked before use, and the command that mends a damaged folder.

Every way a model resolves (a local folder, the store, a repository of prebuilt variants,
the onnx-community layout) ends in :func:`model_files`: a folder with a ``manifest.json`` is
checked file by file against it first (``store/verify.py``), so no session ever opens on
damaged weights, and the error names the command that replaces the folder: the export that
built it, or, for a folder pulled from a repository (``origin.json``), ``embgemma pull``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embgemma_plugins.errors import ModelNotFoundError
from embgemma_plugins.prompts import PROMPTS_FILE
from embgemma_plugins.store.layout import variant_dir
from embgemma_plugins.store.manifest import MANIFEST_FILE, Manifest
from embgemma_plugins.store.verify import verify

TOKENIZER_FILE = "tokenizer.model"
#: Written beside a pulled variant's files (not one of them): the repository it came from.
ORIGIN_FILE = "origin.json"


@dataclass(frozen=True)
class ModelFiles:
    """Where a loadable model's parts are."""

    root: Path
    onnx: Path
    tokenizer: Path
    prompts: Path | None
    manifest: Manifest | None


def pull_command(repo: str, variant: str, revision: str | None = None) -> str:
    """The command that (re)installs ``variant`` of the repository ``repo`` into the store."""
    pinned = f" --revision {revision}" if revision else ""
    return f"embgemma pull {repo} --variant {variant}{pinned}"


def origin(folder: Path) -> dict[str, Any] | None:
    """Where a store folder was pulled from (its ``origin.json``), or ``None`` if built."""
    try:
        data = json.loads((folder / ORIGIN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("repo"), str) else None


def repair_command(root: Path, manifest: Manifest) -> str:
    """The command that replaces the variant folder ``root`` with an intact copy: a pull
    for a folder that came from a repository, else the export that builds it."""
    came = origin(root)
    if came is not None:
        return pull_command(came["repo"], manifest.variant, came.get("revision"))
    command = f"embgemma export --model {manifest.model_id} --variant {manifest.variant}"
    stored = variant_dir(manifest.model_id, manifest.variant)
    return command if stored.resolve() == root.resolve() else f"{command} --out {root}"


def model_files(root: Path, onnx: Path, fix: Callable[[], str] | None = None) -> ModelFiles:
    """The files of the model in ``root`` (graph ``onnx``), checked against its manifest if
    it has one; ``fix()`` names the command that replaces a damaged folder (default:
    :func:`repair_command`)."""
    manifest = Manifest.read(root) if (root / MANIFEST_FILE).is_file() else None
    if manifest is not None:  # never a session on damaged weights
        verify(root, manifest, fix or (lambda: repair_command(root, manifest)))
    tokenizer = root / TOKENIZER_FILE
    if not tokenizer.is_file():
        raise ModelNotFoundError(f"{root} has no {TOKENIZER_FILE} (the SentencePiece tokenizer)")
    prompts = root / PROMPTS_FILE
    return ModelFiles(root, onnx, tokenizer, prompts if prompts.is_file() else None, manifest)
