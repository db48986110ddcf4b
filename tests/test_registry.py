"""The variant registry: a variant is a table of recipes.toml, and a new table needs no code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embgemma_plugins import EmbeddingGemma
from embgemma_plugins.errors import InvalidArgumentError
from embgemma_plugins.store import registry
from embgemma_plugins.store.manifest import Manifest

LEAN = """
[lean]
community_file = "model_lean.onnx"
bar = { mean_cosine = 0.999, min_cosine = 0.99, top10_overlap = 0.98, max_size_mb = 50 }
description = "a throwaway variant: fp32 weights, no fusions"
outputs = ["sentence_embedding"]
fold_dense_head = true
fusions = ["fast_gelu"]
optimization = "basic"
"""


@pytest.fixture
def lean_recipes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "recipes.toml"
    path.write_text(registry.RECIPES.read_text(encoding="utf-8") + LEAN, encoding="utf-8")
    monkeypatch.setenv(registry.ENV_RECIPES, str(path))
    return path


def test_the_packaged_registry() -> None:
    assert registry.variants() == ("fp32", "int8", "int4")
    assert registry.default_variant() == "int8"
    assert registry.info("int8").bar == registry.Bar(0.995, 0.98, 0.95, 320)
    assert registry.info("int4").community_file == "model_q4.onnx"
    with pytest.raises(InvalidArgumentError, match="variant must be one of fp32, int8, int4"):
        registry.check_variant("fp16")


def test_a_new_table_is_a_new_variant_everywhere(
    lean_recipes: Path, tiny_checkpoint: Path, tiny_corpus: Path, tmp_path: Path
) -> None:
    from embgemma_plugins.onnx_models.recipe import load_recipes

    assert registry.variants() == ("fp32", "int8", "int4", "lean")
    assert load_recipes()["lean"].fusions == ("fast_gelu",)
    out = tmp_path / "lean"
    env = {**os.environ, registry.ENV_RECIPES: str(lean_recipes)}
    done = subprocess.run(
        [sys.executable, "-m", "embgemma_plugins.cli.main", "export", "--model",
         str(tiny_checkpoint), "--variant", "lean", "--out", str(out), "--fidelity-corpus",
         str(tiny_corpus)], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = Manifest.read(out)
    assert manifest.variant == "lean"
    assert manifest.fidelity is not None and manifest.fidelity["passed"]
    assert manifest.fidelity["bar"]["max_size_mb"] == 50
    assert "bar" not in manifest.recipe and "community_file" not in manifest.recipe
    model = EmbeddingGemma(out, variant="lean")
    vectors = model.embed_queries(["a throwaway variant"])
    assert vectors.shape == (1, 768)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[x]\ndefault = true\ndescription = "no bar"\n', r"\[x\] needs bar = "),
        ('[x]\ndefault = true\nbar = { mean_cosine = 1 }\n', r"\[x\] needs bar = "),
        ('[x]\nbar = { mean_cosine = 1, min_cosine = 1, top10_overlap = 1, max_size_mb = 1 }\n',
         "exactly one variant must have default = true"),
        ("[x\n", "is not valid TOML"),
    ],
)
def test_a_broken_registry_names_the_file_and_table(
    table: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "recipes.toml"
    path.write_text(table, encoding="utf-8")
    monkeypatch.setenv(registry.ENV_RECIPES, str(path))
    with pytest.raises(InvalidArgumentError, match=message):
        registry.variants()
