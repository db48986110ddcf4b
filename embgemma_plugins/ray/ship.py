"""Workers get the artifact, never a build: the driver's variant folder, shipped once.

The driver resolves the variant (its store, a repository of prebuilt variants, or a build
there) and actors open it by the same settings: from their machine's store, or from the
same repository (``variants_repo``/``model``, cache first, then the hub). An actor whose
machine has neither asks for the driver's folder: one Ray task on the driver's node reads
it, checked against its manifest, into Ray's object store; the actor writes it into its
own model store, where it is checked again before a session opens. A file lock per store
folder lets the first actor of a machine fetch it while the others wait and use that copy,
so a folder crosses to a machine once, and no worker ever builds.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from filelock import FileLock

from embgemma_plugins.errors import DamagedModelError, ModelNotFoundError
from embgemma_plugins.settings import ModelSettings
from embgemma_plugins.store.files import ModelFiles, repair_command
from embgemma_plugins.store.layout import is_variant_dir, variant_dir
from embgemma_plugins.store.manifest import MANIFEST_FILE, Manifest
from embgemma_plugins.store.verify import verify

if TYPE_CHECKING:
    from embgemma_plugins.model import EmbeddingGemma


@dataclass(frozen=True)
class Shipment:
    """Where the driver's verified variant folder is: what an actor asks for."""

    node: str  # the Ray node id of the driver
    folder: str  # the variant folder on that node
    variant: str


def shipment(files: ModelFiles) -> Shipment | None:
    """The shipment of the driver's ``files`` (``None`` for a folder without a manifest:
    nothing to check it by on arrival, so it is not shipped). Joins Ray if not joined."""
    if files.manifest is None:
        return None
    import ray

    if not ray.is_initialized():
        ray.init()  # what Ray Data would do on first use
    node = ray.get_runtime_context().get_node_id()
    return Shipment(node, str(files.root.resolve()), files.manifest.variant)


def read_folder(folder: str) -> dict[str, np.ndarray]:
    """The files of a variant folder, after checking them against its manifest (a Ray task
    on the driver's node: never ship damaged weights). Arrays map the files, so Ray copies
    them into its object store without a copy on this worker's heap."""
    root = Path(folder)
    manifest = Manifest.read(root)
    verify(root, manifest, lambda: repair_command(root, manifest))
    out = {}
    for name in [MANIFEST_FILE, *sorted(manifest.files)]:
        path = root / name
        size = path.stat().st_size
        out[name] = np.asarray(np.memmap(path, np.uint8, "r")) if size else np.zeros(0, np.uint8)
    return out


def receive(model: str, ship: Shipment) -> Path:
    """The driver's folder, written into this machine's store as the variant of ``model``
    (fetched by the first actor of the machine; the others find it there)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    target = variant_dir(model, ship.variant)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if is_variant_dir(target):
            return target  # another actor of this machine received it (checked at load)
        on_driver = NodeAffinitySchedulingStrategy(ship.node, soft=False)
        task = ray.remote(read_folder).options(num_cpus=0, scheduling_strategy=on_driver)
        files = ray.get(task.remote(ship.folder))
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            for name, data in files.items():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                data.tofile(tmp / name)
            del files
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def open_model(settings: ModelSettings, ship: Shipment | None) -> EmbeddingGemma:
    """The actor's model: by ``settings`` (its store, the same repository), else the
    driver's shipped folder. Damage is never papered over: it is raised."""
    from embgemma_plugins.model import EmbeddingGemma

    try:
        return EmbeddingGemma.from_settings(settings)
    except DamagedModelError:
        raise
    except ModelNotFoundError:
        if ship is None:
            raise
    folder = receive(settings.model, ship)
    return EmbeddingGemma.from_settings(replace(settings, model=str(folder)))
