"""From ``model=`` and ``variant=`` to the files a session needs.

Accepted, in this order:

1. a local folder holding ``model.onnx`` (a store variant or any Optimum export),
2. a local folder in the onnx-community layout (``onnx/model.onnx`` + ``.onnx_data``),
3. a local sentence-transformers checkpoint folder, or a hub id: the variant is
   looked up in the model store; a hub repository of prebuilt variant folders
   (``store/prebuilt.py``) or in the onnx-community layout is used directly; then the
   repository of prebuilt variants named by ``variants_repo`` (or
   ``$EMBGEMMA_VARIANTS_REPO``) is tried; otherwise the variant is built with the export
   pipeline when the ``export`` extra is installed, or an error prints the command that
   builds it (and why no prebuilt variant was used).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path

from embgemma_plugins.errors import InvalidArgumentError, ModelNotFoundError
from embgemma_plugins.prompts import PROMPTS_FILE, PromptTable
from embgemma_plugins.store.files import TOKENIZER_FILE, ModelFiles, model_files, repair_command
from embgemma_plugins.store.layout import DEFAULT_MODEL, ONNX_FILE, store_root, variant_dir
from embgemma_plugins.store.registry import check_variant, default_variant, info, registry

__all__ = [
    "BUILDERS", "ENV_VARIANTS_REPO", "TOKENIZER_FILE", "ModelFiles", "builder", "community_file",
    "export_available", "first_use_message", "from_folder", "load_prompt_table", "locate",
    "missing_variant_message", "model_files", "repair_command", "variants_repo_of",
]
#: Entry-point group of variant builders: the build layer (onnx_models) registers one, so the
#: runtime builds a missing variant without importing the layer above it.
BUILDERS = "embgemma_plugins.builders"
Builder = Callable[[str | Path, str], Path]
#: The repository of prebuilt variants a missing store variant is fetched from before a build.
ENV_VARIANTS_REPO = "EMBGEMMA_VARIANTS_REPO"


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


def from_folder(folder: Path, variant: str | None) -> ModelFiles | None:
    """A folder that is itself an export; ``None`` if it holds no ONNX model."""
    if (folder / ONNX_FILE).is_file():
        files = model_files(folder, folder / ONNX_FILE)
        made = files.manifest.variant if files.manifest else None
        if variant and made and variant != made:
            raise InvalidArgumentError(f"{folder} holds the {made} variant, not {variant}")
        return files
    name = community_file(variant)
    if name and (folder / "onnx" / name).is_file():
        return model_files(folder, folder / "onnx" / name)
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


def _prebuilt(
    repo: str, variant: str | None, revision: str | None, model_id: str | None, tried: list[str]
) -> ModelFiles | None:
    from embgemma_plugins.store import prebuilt  # not at the top: see `locate`

    return prebuilt.from_repo(repo, variant, revision, model_id, tried)


def variants_repo_of(setting: str | None) -> str | None:
    """The repository of prebuilt variants in use: ``setting``, else
    ``$EMBGEMMA_VARIANTS_REPO``; an empty string means none."""
    repo = os.environ.get(ENV_VARIANTS_REPO) if setting is None else setting
    return repo.strip() or None if repo else None


PREBUILT_HINT = (
    "A prebuilt variant needs no build: name a repository of them with "
    "EMBGEMMA_VARIANTS_REPO=ORG/NAME (or variants_repo=..., --variants-repo), pass "
    "model=ORG/NAME, or install one with `embgemma pull ORG/NAME` (docs/publishing.md)."
)


def missing_variant_message(model: str | Path, variant: str, tried: Sequence[str] = ()) -> str:
    why = "".join(f"\n(no prebuilt variant: {reason})" for reason in tried)
    return (
        f"the {variant} variant of {model} is not in the model store ({store_root()}).{why}\n"
        f"Build it with:\n  embgemma export --model {model} --variant {variant}\n"
        f"(this needs the export extra: pip install 'embgemma-plugins[export]').\n{PREBUILT_HINT}"
    )


def first_use_message(model: str | Path, variant: str, tried: Sequence[str] = ()) -> str:
    """What a build on first use says before it starts: how long, how much memory, and how
    to do without it."""
    cost = info(variant).build
    about = (f"about {cost.minutes:g} minutes and {cost.peak_gb:g} GB of memory on a 2-core "
             "machine" if cost else "a few minutes")
    why = "".join(f"\n(no prebuilt variant: {reason})" for reason in tried)
    return (f"embgemma: building the {variant} variant of {model}: once, {about}.{why}\n"
            f"embgemma: {PREBUILT_HINT}")


_WARNED: set[Path] = set()


def _warn_stale(files: ModelFiles, why: str) -> None:
    """Say once per process that a stale store variant is used as it is (no builder here)."""
    if files.root in _WARNED or files.manifest is None:
        return
    _WARNED.add(files.root)
    fix = repair_command(files.root, files.manifest)
    print(f"embgemma: warning: the {files.manifest.variant} variant in {files.root} is stale: "
          f"{why}. It is used as it is; rebuild it with `{fix}` (the export extra) for what "
          "this version computes (docs/variants.md).", file=sys.stderr, flush=True)


def _stored(folder: Path, model: str | Path, variant: str, build_missing: bool) -> ModelFiles:
    """The store variant in ``folder``; a stale one is rebuilt first where a builder is
    installed (and allowed), else used with a warning."""
    files = model_files(folder, folder / ONNX_FILE)
    why = files.manifest.stale() if files.manifest else None
    build = builder() if why and build_missing else None
    if why is None or build is None:
        if why:
            _warn_stale(files, why)
        return files
    print(f"embgemma: the {variant} variant of {model} in the store is stale: {why}. "
          "Rebuilding it.", file=sys.stderr, flush=True)
    built = build(model, variant)
    return model_files(built, built / ONNX_FILE)


def locate(
    model: str | Path,
    variant: str | None,
    build_missing: bool = True,
    variants_repo: str | None = None,
    revision: str | None = None,
) -> ModelFiles:
    """Resolve ``model``/``variant`` to files, building a missing store variant if allowed.
    ``revision`` pins the commit, branch or tag of a hub repository of prebuilt variants
    (``model`` itself or ``variants_repo``); a pinned revision skips the store.

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
    if revision is None and (stored / ONNX_FILE).is_file():
        return _stored(stored, path if is_local else str(model), wanted, build_missing)
    tried: list[str] = []
    if not is_local:
        files = _prebuilt(str(model), variant, revision, None, tried)
        files = files or _from_hub_onnx(str(model), variant)
        if files:
            return files
    repo = variants_repo_of(variants_repo)
    if repo and repo != str(model):
        model_id = str(path.resolve()) if is_local else str(model)
        files = _prebuilt(repo, wanted, revision, model_id, tried)
        if files:
            return files
    build = builder() if build_missing else None
    if build is not None:
        print(first_use_message(model, wanted, tried), file=sys.stderr, flush=True)
        built = build(path if is_local else str(model), wanted)
        return model_files(built, built / ONNX_FILE)
    raise ModelNotFoundError(missing_variant_message(model, wanted, tried))


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
