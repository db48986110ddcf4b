"""A clean base install (the runtime's requirements only: no torch, transformers, optimum or
sentence-transformers) resolves a prebuilt variant from a repository and embeds with it.

Cost: the first run creates a virtual environment (``python -m venv``; pip installs the base
requirements at this environment's versions, from pip's cache or PyPI, then this checkout
with ``--no-deps``, editable): about a minute. Later runs reuse it (it is keyed by the
requirements, their versions, this checkout and the Python version) and take seconds.
Skipped when pip cannot install the requirements (no PyPI and no cache).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from embgemma_plugins import EmbeddingGemma
from tests.hubcache import publish
from tests.texts import TEXTS

ROOT = Path(__file__).resolve().parents[1]
REPO = "acme/tiny-variants"
EXPORT_ONLY = ("torch", "transformers", "optimum", "sentence_transformers")


def base_requirements() -> list[str]:
    """The project's base requirements, pinned to the versions installed here (so the
    vectors can be compared bit for bit)."""
    import re

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pinned = []
    for spec in data["project"]["dependencies"]:
        if ";" in spec:  # an environment marker (tomli on 3.10): not for this Python
            continue
        name = re.split(r"[<>=!~ \[]", spec, maxsplit=1)[0]
        pinned.append(f"{name}=={metadata.version(name)}")
    return pinned


@pytest.fixture(scope="session")
def base_venv() -> Path:
    """A virtual environment with only the base install (created once, then reused)."""
    requirements = base_requirements()
    key = hashlib.sha256(json.dumps([requirements, str(ROOT), sys.version]).encode())
    venv = Path(tempfile.gettempdir()) / f"embgemma-base-venv-{key.hexdigest()[:12]}"
    python = venv / "bin" / "python"
    if not (venv / "ready").is_file():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        done = subprocess.run([*pip, *requirements], capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            pytest.skip(f"pip could not install the base requirements: {done.stderr[-500:]}")
        subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True)
        (venv / "ready").write_text("\n".join(requirements) + "\n")
    return venv


CHECK = """
import importlib.util, json, sys
import numpy as np
from embgemma_plugins import EmbeddingGemma
repo, texts, out, heavy = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3], sys.argv[4:]
m = EmbeddingGemma(repo, variant="fp32")
np.save(out, m.embed_queries(texts))
try:
    import torch
    torch_imported = True
except ImportError:
    torch_imported = False
found = [n for n in heavy if importlib.util.find_spec(n) is not None]
print(json.dumps({"root": str(m.files.root), "torch": torch_imported, "found": found}))
"""


def test_a_base_install_embeds_from_a_repository(base_venv, tiny_model, tmp_path):
    hub = tmp_path / "hf" / "hub"
    folder = publish(tiny_model, hub, REPO, "fp32")
    env = {"PATH": f"{base_venv / 'bin'}:/usr/bin:/bin", "HF_HUB_CACHE": str(hub),
           "HF_HUB_OFFLINE": "1", "EMBGEMMA_HOME": str(tmp_path / "store"), "HOME": str(tmp_path)}
    (tmp_path / "texts.json").write_text(json.dumps(TEXTS), encoding="utf-8")
    done = subprocess.run(
        [str(base_venv / "bin" / "python"), "-c", CHECK, REPO, str(tmp_path / "texts.json"),
         str(tmp_path / "venv.npy"), *EXPORT_ONLY], capture_output=True, text=True, env=env,
        cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report == {"root": str(folder), "torch": False, "found": []}
    here = EmbeddingGemma(tiny_model).embed_queries(TEXTS)
    assert np.array_equal(np.load(tmp_path / "venv.npy"), here)
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    cli = str(base_venv / "bin" / "embgemma")
    pulled = subprocess.run([cli, "pull", REPO, "--variant", "fp32"], capture_output=True,
                            text=True, env=env, cwd=tmp_path)
    assert pulled.returncode == 0, pulled.stderr
    embedded = subprocess.run(
        [cli, "embed", "in.txt", "out.npy", "--model", REPO, "--variant", "fp32", "--task",
         "query", "-q"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert embedded.returncode == 0, embedded.stderr
    assert np.load(tmp_path / "out.npy").shape == (len(TEXTS), 768)
