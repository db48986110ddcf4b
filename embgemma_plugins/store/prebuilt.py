"""Prebuilt variants: variant folders published on a Hugging Face repository, used as built.

A variant folder (``model.onnx`` + ``model.onnx.data``, ``tokenizer.model``, the prompt
table, ``manifest.json`` with the sha256 of every file) is the unit built once and used
anywhere (``embgemma export --variant V --out DIR`` writes one). A repository holds one at
its root, or several in subfolders named by variant (``int8/``, ``int4/``, ``fp32/``).

Files come through ``huggingface_hub``: the local cache first, the hub second (never with
``HF_HUB_OFFLINE=1``), at a pinnable ``revision``; every file the manifest lists is checked
against its sha256 before a session opens (``store/verify.py``). Nothing here needs the
``export`` extra. :func:`pull` installs a repository's variant into the model store, with an
``origin.json`` saying where it came from (so a damaged copy names ``embgemma pull``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from embgemma_plugins.errors import DamagedModelError, InvalidArgumentError, ModelNotFoundError
from embgemma_plugins.store import hub
from embgemma_plugins.store.files import (
    ORIGIN_FILE,
    ModelFiles,
    model_files,
    origin,
    pull_command,
)
from embgemma_plugins.store.layout import ONNX_FILE, variant_dir
from embgemma_plugins.store.manifest import MANIFEST_FILE, Manifest
from embgemma_plugins.store.registry import default_variant
from embgemma_plugins.store.verify import check_folder


@dataclass(frozen=True)
class Prebuilt:
    """One variant folder of a repository, at one commit, in the local cache."""

    repo: str
    commit: str
    subfolder: str  # "" for a variant at the repository's root
    folder: Path  # in the cache: .../snapshots/<commit>/<subfolder>
    manifest: Manifest

    def path_in_repo(self, name: str) -> str:
        return f"{self.subfolder}/{name}" if self.subfolder else name


def _prebuilt(repo: str, manifest_path: Path, subfolder: str) -> Prebuilt:
    parts = manifest_path.parts
    commit = parts[parts.index("snapshots") + 1] if "snapshots" in parts else ""
    folder = manifest_path.parent
    return Prebuilt(repo, commit, subfolder, folder, Manifest.read(folder))


def find(repo: str, variant: str | None, revision: str | None = None) -> Prebuilt | None:
    """The ``variant`` folder of ``repo`` (its subfolder, else the repository's root), or
    ``None`` if the repository holds no manifest there. Only manifests are fetched.

    The cache is asked first for both places, then the hub; a repository neither cached nor
    reachable raises :class:`ModelNotFoundError` saying why."""
    wanted = variant or default_variant()
    places = [wanted, ""]
    for sub in places:
        found = hub.cached(repo, f"{sub}/{MANIFEST_FILE}" if sub else MANIFEST_FILE, revision)
        if found is not None:
            return _prebuilt(repo, found, sub)
    if hub.offline():
        raise ModelNotFoundError(
            f"{repo} has neither {wanted}/{MANIFEST_FILE} nor {MANIFEST_FILE} in the local "
            "Hugging Face cache, and HF_HUB_OFFLINE=1"
        )
    for sub in places:
        found = hub.download(repo, f"{sub}/{MANIFEST_FILE}" if sub else MANIFEST_FILE, revision)
        if found is not None:
            return _prebuilt(repo, found, sub)
    return None


def fetch(p: Prebuilt, force: frozenset[str] = frozenset()) -> Path:
    """Every file ``p``'s manifest lists, into the cache (``force``: download those again);
    the folder holding them. A file that cannot be had raises :class:`DamagedModelError`
    naming it. The files are not checked here: loading checks them (``store/verify.py``)."""
    missing: dict[str, str] = {}
    offline = "not in the local Hugging Face cache, and HF_HUB_OFFLINE=1"
    for name in sorted(p.manifest.files):
        try:
            got = hub.download(p.repo, p.path_in_repo(name), p.commit or None, name in force)
        except ModelNotFoundError as e:
            missing[name] = offline if hub.offline() else (
                f"not in the local Hugging Face cache, and not downloaded: {e}")
            continue
        if got is None:
            missing[name] = offline if hub.offline() else (
                f"the repository has no {p.path_in_repo(name)}")
    if missing:
        listed = "; ".join(f"{name}: {why}" for name, why in missing.items())
        raise DamagedModelError(
            f"the {p.manifest.variant} variant of {p.repo} (commit {p.commit[:12]}) is "
            f"incomplete in the local Hugging Face cache ({listed}). Fetch it with:\n  "
            f"{pull_command(p.repo, p.manifest.variant)}",
            sorted(missing),
        )
    return p.folder


def from_repo(
    repo: str, variant: str | None, revision: str | None, model_id: str | None, tried: list[str]
) -> ModelFiles | None:
    """``variant`` of the repository of prebuilt variants ``repo``, or ``None`` (and why, in
    ``tried``). With ``model_id`` (a variants repository tried for a model), the variant
    must be the one asked for and built from that checkpoint."""
    wanted = variant or default_variant()
    if model_id is None and hub.cached(repo, "modules.json", revision):
        return None  # a sentence-transformers checkpoint: export it
    if model_id is not None and revision is None:  # pulled into the store before
        stored = variant_dir(repo, wanted)
        if (stored / ONNX_FILE).is_file() and Manifest.read(stored).model_id == model_id:
            return model_files(stored, stored / ONNX_FILE)
    try:
        found = find(repo, variant or (wanted if model_id else None), revision)
    except ModelNotFoundError as e:
        tried.append(str(e))
        return None
    if found is None:
        tried.append(f"{repo} holds no prebuilt {wanted} variant")
        return None
    made = found.manifest
    if (variant or model_id) and made.variant != wanted:
        where = f"in {found.subfolder}/" if found.subfolder else "at its root"
        if model_id is None:
            raise InvalidArgumentError(f"{repo} holds the {made.variant} variant {where}, "
                                       f"not {wanted}")
        tried.append(f"{repo} holds the {made.variant} variant {where}, not {wanted}")
        return None
    if model_id is not None and made.model_id != model_id:
        tried.append(f"{repo} holds the {wanted} variant of {made.model_id}, not of {model_id}")
        return None
    folder = fetch(found)
    return model_files(folder, folder / ONNX_FILE,
                       lambda: pull_command(repo, made.variant, revision))


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link to the cached file (no second copy on disk), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    real = source.resolve()
    try:
        os.link(real, target)
    except OSError:
        shutil.copyfile(real, target)


def _damage(folder: Path, bad: dict[str, str], fix: str) -> DamagedModelError:
    listed = "; ".join(f"{name}: {why}" for name, why in bad.items())
    return DamagedModelError(
        f"{folder} is damaged ({listed}); its files do not match its manifest.json, "
        f"so it was not used. Replace it with:\n  {fix}",
        sorted(bad),
    )


def install(p: Prebuilt, target: Path, revision: str | None = None) -> Path:
    """Copy (hard-link) ``p``'s checked files into the store folder ``target``, whole or not
    at all, and record where they came from."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            for name in [MANIFEST_FILE, *p.manifest.files]:
                _link_or_copy(p.folder / name, tmp / name)
            record = {"repo": p.repo, "commit": p.commit, "subfolder": p.subfolder,
                      "revision": revision}
            (tmp / ORIGIN_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        bad = check_folder(target, p.manifest).bad  # the copy as it now is (and stamped)
        if bad:
            shutil.rmtree(target, ignore_errors=True)
            raise _damage(target, bad, pull_command(p.repo, p.manifest.variant, revision))
    return target


def pull(repo: str, variant: str | None = None, revision: str | None = None) -> Path:
    """Install ``variant`` (default: the default variant, or whatever the root holds) of the
    repository ``repo`` into the model store, checked file by file; returns its folder.

    Files found damaged in the cache are downloaded again (with the hub reachable)."""
    p = find(repo, variant, revision)
    wanted = variant or default_variant()
    if p is None:
        raise ModelNotFoundError(
            f"{repo} holds no prebuilt variant: neither {wanted}/{MANIFEST_FILE} nor "
            f"{MANIFEST_FILE} at its root (a repository of variant folders written by "
            "`embgemma export --out`; see docs/publishing.md)"
        )
    made = p.manifest.variant
    if variant and made != variant:
        where = f"in {p.subfolder}/" if p.subfolder else "at its root"
        raise InvalidArgumentError(f"{repo} holds the {made} variant {where}, not {variant}")
    fetch(p)
    bad = check_folder(p.folder, p.manifest).bad
    if bad:
        try:
            fetch(p, force=frozenset(bad))
        except ModelNotFoundError as e:
            raise _damage(p.folder, bad, "the same command with the hub reachable") from e
        bad = check_folder(p.folder, p.manifest).bad
        if bad:
            raise _damage(p.folder, bad, f"a fixed upload to {repo}: the repository's own "
                          "files differ from its manifest")
    target = variant_dir(repo, made)
    if (
        origin(target) is not None
        and Manifest.read(target).files == p.manifest.files
        and not check_folder(target, p.manifest).bad
    ):
        return target  # already installed, intact
    return install(p, target, revision)
