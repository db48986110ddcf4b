"""From ``model=`` and ``variant=`` to the files a session needs.

Accepted, in this order:

1. a local folder holding ``model.onnx`` (a store variant or any Optimum export),
2. a local folder in the onnx-community layout (``onnx/model.onnx`` + ``.onnx_data``),
3. a local sentence-transformers checkpoint folder, or a hub id: the variant is
   looked up in the model store; a hub repository in the onnx-community layout is
   used directly; otherwise the variant is built with the export pipeline when the
   ``export`` extra is installed, or an error prints the command that builds it.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from embgemma_plugins.errors import InvalidArgumentError, ModelNotFoundError
from embgemma_plugins.prompts import PROMPTS_FILE, PromptTable
from embgemma_plugins.store.layout import DEFAULT_MODEL, ONNX_FILE, store_root, variant_dir
from embgemma_plugins.store.manifest import MANIFEST_FILE, Manifest
from embgemma_plugins.store.registry import check_variant, default_variant, registry
from embgemma_plugins.store.verify import verify

TOKENIZER_FILE = "tokenizer.model"
#: Entry-point group of variant builders: the build layer (onnx_models) registers one, so the
#: runtime builds a missing variant without importing the layer above it.
BUILDERS = "embgemma_plugins.builders"
Builder = Callable[[str | Path, str], Path]


@dataclass(frozen=True)
class ModelFiles:
    """Where a loadable model's parts are."""

    root: Path
    onnx: Path
    tokenizer: Path
    prompts: Path | None
    manifest: Manifest | None


def export_available() -> bool:
    """Whether the ``export`` extra (torch, optimum-onnx) is importable."""
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "optimum.onnxruntime"))


def builder() -> Builder | None:
    """The installed variant builder, or ``None`` without the ``export`` extra."""
    if not export_available():
        return None
    for point in entry_points(group=BUILDERS):
        found: Builder = point.load()
        return found
    return None


def community_file(variant: str | None) -> str | None:
    """The onnx-community file name of ``variant`` (fp32 when none is named)."""
    return registry()[variant or "fp32"].community_file


def repair_command(root: Path, manifest: Manifest) -> str:
    """The command that replaces the variant folder ``root`` with an intact copy."""
    command = f"embgemma export --model {manifest.model_id} --variant {manifest.variant}"
    stored = variant_dir(manifest.model_id, manifest.variant)
    return command if stored.resolve() == root.resolve() else f"{command} --out {root}"


def _files(root: Path, onnx: Path) -> ModelFiles:
    manifest = Manifest.read(root) if (root / MANIFEST_FILE).is_file() else None
    if manifest is not None:  # never a session on damaged weights
        verify(root, manifest, lambda: repair_command(root, manifest))
    tokenizer = root / TOKENIZER_FILE
    if not tokenizer.is_file():
        raise ModelNotFoundError(f"{root} has no {TOKENIZER_FILE} (the SentencePiece tokenizer)")
    prompts = root / PROMPTS_FILE
    return ModelFiles(root, onnx, tokenizer, prompts if prompts.is_file() else None, manifest)


def from_folder(folder: Path, variant: str | None) -> ModelFiles | None:
    """A folder that is itself an export; ``None`` if it holds no ONNX model."""
    if (folder / ONNX_FILE).is_file():
        files = _files(folder, folder / ONNX_FILE)
        made = files.manifest.variant if files.manifest else None
        if variant and made and variant != made:
            raise InvalidArgumentError(f"{folder} holds the {made} variant, not {variant}")
        return files
    name = community_file(variant)
    if name and (folder / "onnx" / name).is_file():
        return _files(folder, folder / "onnx" / name)
    if (folder / "onnx").is_dir():
        raise ModelNotFoundError(
            f"{folder}/onnx has no {name or 'file'} for variant {variant or 'fp32'}"
        )
    return None


def _from_hub_onnx(repo_id: str, variant: str | None) -> ModelFiles | None:
    """A hub repository in the onnx-community layout, or ``None`` if it is not one."""
    from embgemma_plugins.store import hub  # here, not at the top: see `locate`

    if hub.cached(repo_id, "modules.json"):
        return None  # a sentence-transformers checkpoint: export it, do not probe the hub
    file = community_file(variant)
    if file is None:
        return None
    name = f"onnx/{file}"
    try:
        onnx = hub.download(repo_id, name)
    except ModelNotFoundError:
        return None  # not reachable: let the export path give the precise error
    if onnx is None:
        return None
    hub.download(repo_id, name + "_data")
    hub.download(repo_id, TOKENIZER_FILE)
    hub.download(repo_id, PROMPTS_FILE)
    return from_folder(onnx.parent.parent, variant)


def missing_variant_message(model: str | Path, variant: str) -> str:
    return (
        f"the {variant} variant of {model} is not in the model store ({store_root()}).\n"
        f"Build it with:\n  embgemma export --model {model} --variant {variant}\n"
        "(this needs the export extra: pip install 'embgemma-plugins[export]')"
    )


def locate(model: str | Path, variant: str | None, build_missing: bool = True) -> ModelFiles:
    """Resolve ``model``/``variant`` to files, building a missing store variant if allowed.

    A variant already in the store resolves without importing huggingface_hub (and with it
    requests and urllib3: 18 MB of a process's resident memory, VmRSS after
    `import embgemma_plugins` 72 -> 55 MB)."""
    check_variant(variant)
    path = Path(model).expanduser()
    is_local = path.is_dir()
    if is_local:
        found = from_folder(path, variant)
        if found:
            return found
        if not (path / "modules.json").is_file():
            raise ModelNotFoundError(
                f"{path} holds neither model.onnx, onnx/model.onnx, nor a "
                "sentence-transformers checkpoint (modules.json)"
            )
    elif (
        isinstance(model, Path)
        or str(model).startswith((".", "/", "~"))
        or str(model).count("/") != 1
    ):
        raise ModelNotFoundError(f"{model} is neither an existing folder nor a hub id (org/name)")
    wanted = variant or default_variant()
    stored = variant_dir(path if is_local else str(model), wanted)
    if (stored / ONNX_FILE).is_file():
        return _files(stored, stored / ONNX_FILE)
    if not is_local:
        community = _from_hub_onnx(str(model), variant)
        if community:
            return community
    build = builder() if build_missing else None
    if build is not None:
        print(
            f"embgemma: building the {wanted} variant of {model} (one time, a few minutes)...",
            file=sys.stderr,
        )
        built = build(path if is_local else str(model), wanted)
        return _files(built, built / ONNX_FILE)
    raise ModelNotFoundError(missing_variant_message(model, wanted))


def load_prompt_table(files: ModelFiles) -> PromptTable:
    """The folder's prompt table; exports without one (the onnx-community layout)
    use the table of the checkpoint they were made from."""
    if files.prompts:
        return PromptTable.from_file(files.prompts)
    from embgemma_plugins.store import hub

    source = files.manifest.model_id if files.manifest else DEFAULT_MODEL
    try:
        found = hub.download(source, PROMPTS_FILE)
    except ModelNotFoundError as e:
        found, reason = None, str(e)
    else:
        reason = f"{source} has no {PROMPTS_FILE}"
    if found is None:
        raise ModelNotFoundError(
            f"{files.root} has no prompt table ({PROMPTS_FILE}) and the one of {source} "
            f"could not be read: {reason}. Pass prompt=... explicitly, or copy "
            f"{PROMPTS_FILE} of the checkpoint into {files.root}"
        )
    return PromptTable.from_file(found)
