"""The source checkpoint of a variant: a sentence-transformers folder, local or on the hub."""

from __future__ import annotations

from pathlib import Path

from embgemma_plugins.errors import ModelNotFoundError

#: What a build and the fidelity reference read of a hub checkpoint.
CHECKPOINT_FILES = [
    "*.json",
    "*.safetensors",
    "tokenizer.model",
    "*/*.json",
    "*/*.safetensors",
    "README.md",
]


def resolve_checkpoint(model: str | Path) -> tuple[Path, str, str | None]:
    """(local folder, model id, revision) of a hub id or a local checkpoint folder."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "modules.json").is_file():
            raise ModelNotFoundError(
                f"{path} is not a sentence-transformers checkpoint (no modules.json)"
            )
        return path.resolve(), str(path.resolve()), None
    from embgemma_plugins.store import hub

    folder = hub.snapshot(str(model), allow_patterns=CHECKPOINT_FILES)
    return folder, str(model), folder.name
