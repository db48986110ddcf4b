"""The llm plugin through llm's own command line, in a subprocess, on the tiny model:
`llm embed`, `llm embed-multi` + `llm similar`, the model list, errors, start-up cost."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from importlib.metadata import entry_points

import numpy as np
import pytest

llm = pytest.importorskip("llm")

LLM = [sys.executable, "-m", "llm"]
IDS = [
    "embeddinggemma-300m", "embeddinggemma-300m-query",
    "embeddinggemma-300m-512", "embeddinggemma-300m-512-query",
    "embeddinggemma-300m-256", "embeddinggemma-300m-256-query",
    "embeddinggemma-300m-128", "embeddinggemma-300m-128-query",
]
DOCS = {
    "apt": "apt installs and upgrades Debian packages",
    "mars": "Mars is often referred to as the Red Planet",
    "cat": "a cat sleeps on the warm mat",
}


@pytest.fixture
def env(tmp_path, tiny_model):
    return {**os.environ, "LLM_USER_PATH": str(tmp_path / "llm"),
            "EMBGEMMA_LLM_MODEL": str(tiny_model), "HF_HUB_OFFLINE": "1"}


def run(env, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*LLM, *args], capture_output=True, text=True, env=env, timeout=600)
    if ok:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_the_plugin_is_registered_with_llm():
    found = [e.value for e in entry_points(group="llm") if e.name == "embgemma"]
    assert found == ["embgemma_plugins.cli.llm_plugin"], (
        "the llm entry point is missing: reinstall with pip install -e '.[dev]'")


def test_llm_lists_every_side_and_size(env):
    lines = run(env, "embed-models").stdout.splitlines()
    ours = [line.split(": ", 1)[1] for line in lines if line.startswith("EmbeddingGemma: ")]
    assert [entry.split(" ")[0] for entry in ours] == IDS
    assert ours[0] == "embeddinggemma-300m (aliases: embeddinggemma)"


@pytest.mark.parametrize(
    ("model", "side", "dims"),
    [("embeddinggemma-300m", "document", 768), ("embeddinggemma-query", "query", 768),
     ("embeddinggemma-300m-256", "document", 256), ("embeddinggemma-300m-128-query", "query", 128)],
)
def test_llm_embed_uses_the_side_and_size_of_the_model_id(env, tiny_gemma, model, side, dims):
    text = "Which planet is known as the Red Planet?"
    vector = np.array(json.loads(run(env, "embed", "-m", model, "-c", text).stdout))
    full = (tiny_gemma.embed_queries if side == "query" else tiny_gemma.embed_documents)([text])
    expected = full[0, :dims] / np.linalg.norm(full[0, :dims])
    assert vector.shape == (dims,)
    np.testing.assert_allclose(vector, expected, atol=1e-6)


def test_llm_embed_multi_stores_documents_and_similar_ranks_them(env, tmp_path, tiny_gemma):
    src = tmp_path / "docs.json"
    src.write_text(json.dumps([{"id": k, "content": v} for k, v in DOCS.items()]))
    run(env, "embed-multi", "packages", str(src), "-m", "embeddinggemma-300m", "--store")
    db = sqlite3.connect(tmp_path / "llm" / "embeddings.db")
    rows = dict(db.execute("select id, embedding from embeddings order by id").fetchall())
    stored = np.array([llm.decode(rows[k]) for k in DOCS])
    np.testing.assert_allclose(stored, tiny_gemma.embed_documents(list(DOCS.values())),
                               atol=1e-6)
    query = "the red planet"
    hits = [json.loads(line) for line in
            run(env, "similar", "packages", "-c", query, "-n", "3").stdout.splitlines()]
    # llm embeds the query with the collection's model: the document prompt (docs/llm.md)
    scores = stored @ tiny_gemma.embed_documents([query])[0]
    assert [h["id"] for h in hits] == [list(DOCS)[i] for i in np.argsort(-scores)]
    np.testing.assert_allclose([h["score"] for h in hits], np.sort(scores)[::-1], atol=1e-5)


def test_errors_are_one_line_naming_the_environment(env):
    bad = {**env, "EMBGEMMA_LLM_MODEL": "/no/such/export"}
    done = run(bad, "embed", "-m", "embeddinggemma-300m", "-c", "x", ok=False)
    assert done.returncode == 1
    assert done.stderr.startswith(
        "Error: embeddinggemma-300m (from EMBGEMMA_LLM_MODEL=/no/such/export): /no/such/export "
        "is neither an existing folder nor a hub id"), done.stderr
    assert "Traceback" not in done.stderr
    done = run({**env, "EMBGEMMA_LLM_VARIANT": "fp16"}, "embed", "-m", "embeddinggemma",
               "-c", "x", ok=False)
    assert done.returncode == 1 and "variant must be one of fp32, int8, int4" in done.stderr


def test_loading_the_plugin_loads_no_runtime(tmp_path):
    code = ("import sys, llm\n"
            "llm.get_embedding_models()\n"
            "print(','.join(m for m in ('onnxruntime', 'sentencepiece', 'embgemma_plugins.model')"
            " if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={**os.environ, "LLM_USER_PATH": str(tmp_path)})
    assert done.stdout.strip() == ""


def test_the_plugin_offers_every_matryoshka_size():
    from embgemma_plugins.cli.llm_plugin import DIMENSIONS
    from embgemma_plugins.maths import DIMENSIONS as MODEL_DIMENSIONS

    assert tuple(DIMENSIONS) == tuple(MODEL_DIMENSIONS)
