"""Workers get the artifact, never a build: a loopback Ray runtime (2 CPUs) whose actors see
an empty model store of their own (``EMBGEMMA_HOME`` through ``runtime_env``) and the
test's hub cache. An actor gets the variant from the driver's folder (shipped through Ray's
object store, into its own store) or from the same repository, and its vectors are the
local engine's, bit for bit. About 30 s: a Ray runtime starts once for the module.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from embgemma_plugins.jobs.local import run_local
from embgemma_plugins.jobs.plan import EmbedOptions
from embgemma_plugins.store.layout import is_variant_dir, list_variants, variant_dir
from embgemma_plugins.store.manifest import Manifest
from tests.hubcache import publish
from tests.texts import TEXTS

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback: no cluster address
ray = pytest.importorskip("ray", reason="the ray extra is not installed")
REPO = "acme/tiny-variants"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """(the actors' store, the hub cache actors and driver share)."""
    workers = tmp_path_factory.mktemp("worker-store")
    hub = tmp_path_factory.mktemp("hf") / "hub"
    hub.mkdir()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths are long
    env = {"EMBGEMMA_HOME": str(workers), "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", _temp_dir=temp,
             logging_level="warning", runtime_env={"env_vars": env})
    try:
        yield workers, hub
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def driver(cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The driver's own (empty) store and the shared hub cache; input texts in ``in.jsonl``."""
    import huggingface_hub.constants

    workers, hub = cluster
    for folder in workers.iterdir():  # every test starts with actors that hold nothing
        shutil.rmtree(folder)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("EMBGEMMA_HOME", str(tmp_path / "driver-store"))
    monkeypatch.delenv("EMBGEMMA_VARIANTS_REPO", raising=False)
    lines = [json.dumps({"id": f"t{i}", "text": t}) for i, t in enumerate(TEXTS * 3)]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def both_engines(folder: Path, **model: str) -> tuple[np.ndarray, np.ndarray]:
    """The output of the job on Ray (2 actors, one thread each) and here."""
    from embgemma_plugins.ray.engine import run_ray

    out = {}
    for engine in ("ray", "local"):
        extra = {"actors": 2} if engine == "ray" else {}
        o = EmbedOptions(str(folder / "in.jsonl"), folder / f"{engine}.npy", id_field="id",
                         threads=1, chunk_rows=8, engine=engine, **extra, **model)  # type: ignore[arg-type]
        (run_ray if engine == "ray" else run_local)(o)
        out[engine] = np.load(folder / f"{engine}.npy")
    return out["ray"], out["local"]


def test_an_actor_without_the_variant_gets_the_drivers_folder(
    driver, cluster, tiny_model, tiny_checkpoint
):
    workers, _hub = cluster
    stored = variant_dir(tiny_checkpoint, "fp32")  # the driver's store holds it
    shutil.copytree(tiny_model, stored)
    on_ray, here = both_engines(driver, model=str(tiny_checkpoint), variant="fp32")
    assert np.array_equal(on_ray, here)
    received = workers / stored.parent.name / "fp32"  # now in the actors' own store
    assert is_variant_dir(received)
    assert Manifest.read(received).files == Manifest.read(stored).files
    assert sorted(p.name for p in received.iterdir()) == sorted(p.name for p in stored.iterdir())
    left = [p.name for p in workers.rglob("*") if p.name.startswith((".fp32-", "reference-"))]
    assert left == []  # no half-written folder, no fidelity reference: nothing was built


def test_an_actor_gets_a_repository_variant_from_the_repository(driver, cluster, tiny_model):
    workers, hub = cluster
    publish(tiny_model, hub, REPO, "fp32")
    on_ray, here = both_engines(driver, model=REPO, variant="fp32")
    assert np.array_equal(on_ray, here)
    assert list_variants(workers) == []  # used in place from the cache: nothing shipped


def test_actors_use_the_drivers_variants_repository(
    driver, cluster, tiny_model, tiny_checkpoint, monkeypatch
):
    workers, hub = cluster
    publish(tiny_model, hub, REPO, "fp32")
    monkeypatch.setenv("EMBGEMMA_VARIANTS_REPO", REPO)  # the driver's setting only
    on_ray, here = both_engines(driver, model=str(tiny_checkpoint), variant="fp32")
    assert np.array_equal(on_ray, here)
    assert list_variants(workers) == []  # from the repository, not shipped
