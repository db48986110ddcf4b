"""Stale store variants: built by an older build pipeline or by a recipe since changed.

A variant built before a change to the passes (the length bounds of batch invariance, the
token_states output) computes what the old pipeline computed; it is rebuilt before use where
the export extra is installed, and used with a warning, never silently, where it is not.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from embgemma_plugins.cli.main import cli
from embgemma_plugins.store.layout import variant_dir
from embgemma_plugins.store.manifest import MANIFEST_FILE, PIPELINE, Manifest
from embgemma_plugins.store.registry import RECIPES, info, recipe_digest
from embgemma_plugins.store.resolve import locate


@pytest.fixture
def stale_store(tiny_model: Path, tiny_checkpoint: Path, tmp_path: Path, monkeypatch) -> Path:  # type: ignore[no-untyped-def]
    """A store holding the tiny fp32 variant under a manifest written before the pipeline
    was recorded (as every manifest of the previous release was)."""
    monkeypatch.setenv("EMBGEMMA_HOME", str(tmp_path / "store"))
    folder = variant_dir(tiny_checkpoint, "fp32")
    shutil.copytree(tiny_model, folder)
    data = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    del data["pipeline"], data["recipe_sha256"]
    (folder / MANIFEST_FILE).write_text(json.dumps(data), encoding="utf-8")
    return folder


def test_a_build_records_its_pipeline_and_recipe(tiny_model: Path) -> None:
    manifest = Manifest.read(tiny_model)
    assert manifest.pipeline == PIPELINE >= 1
    assert manifest.recipe_sha256 == recipe_digest(info("fp32").table)
    assert manifest.stale() is None


def test_a_manifest_without_a_pipeline_is_stale(stale_store: Path) -> None:
    manifest = Manifest.read(stale_store)
    assert manifest.pipeline == 0
    assert manifest.stale() == (
        f"it was built by build pipeline 0, and this version of embgemma-plugins builds "
        f"pipeline {PIPELINE}"
    )


def test_a_changed_recipe_makes_its_variants_stale(tiny_model: Path, tmp_path: Path,
                                                    monkeypatch) -> None:  # type: ignore[no-untyped-def]
    manifest = Manifest.read(tiny_model)
    recipes = tmp_path / "recipes.toml"
    text = RECIPES.read_text(encoding="utf-8")
    recipes.write_text(re.sub(r"(?m)^\[fp32\]\n", "[fp32]\ncalibration_samples = 7\n", text,
                              count=1), encoding="utf-8")
    monkeypatch.setenv("EMBGEMMA_RECIPES", str(recipes))
    assert recipe_digest(info("fp32").table) != manifest.recipe_sha256
    why = manifest.stale()
    assert why is not None and why.startswith("its recipe has changed since it was built")
    # The registry's own keys (bar, build cost) are not the recipe: no rebuild for them.
    costs = tmp_path / "costs.toml"  # a new file: the registry caches by path and mtime
    costs.write_text(re.sub(r"(?m)^build = \{.*\}$", "build = { minutes = 99, peak_gb = 7 }",
                            text, count=1), encoding="utf-8")
    monkeypatch.setenv("EMBGEMMA_RECIPES", str(costs))
    assert info("fp32").build is not None and info("fp32").build.minutes == 99
    assert manifest.stale() is None


def test_without_a_builder_it_is_used_with_one_warning(stale_store: Path, tiny_checkpoint: Path,
                                                       capsys) -> None:  # type: ignore[no-untyped-def]
    files = locate(tiny_checkpoint, "fp32", build_missing=False)
    assert files.root == stale_store
    err = capsys.readouterr().err
    assert f"the fp32 variant in {stale_store} is stale: it was built by build pipeline 0" in err
    assert f"embgemma export --model {Manifest.read(stale_store).model_id} --variant fp32" in err
    locate(tiny_checkpoint, "fp32", build_missing=False)
    assert capsys.readouterr().err == ""  # once per process


def test_models_lists_it_as_stale_with_the_command(stale_store: Path) -> None:
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0, result.output  # stale is not damaged
    assert "STALE" in result.stdout
    assert f"stale: {stale_store}: it was built by build pipeline 0" in result.stderr
    assert "rebuild it with: embgemma export --model" in result.stderr
    listed = json.loads(CliRunner().invoke(cli, ["models", "--json"]).stdout)
    assert listed[0]["stale"].startswith("it was built by build pipeline 0")
    assert listed[0]["damaged"] == {}


def test_with_the_builder_it_is_rebuilt_before_use(stale_store: Path, tiny_checkpoint: Path,
                                                   capsys) -> None:  # type: ignore[no-untyped-def]
    before = Manifest.read(stale_store).build
    files = locate(tiny_checkpoint, "fp32")
    err = capsys.readouterr().err
    assert "in the store is stale: it was built by build pipeline 0" in err
    assert "Rebuilding it." in err
    assert files.root == stale_store
    rebuilt = Manifest.read(stale_store)
    assert rebuilt.pipeline == PIPELINE and rebuilt.stale() is None
    assert rebuilt.build != before and rebuilt.verify(stale_store) == []
    capsys.readouterr()
    assert locate(tiny_checkpoint, "fp32").root == stale_store  # fresh now: no second build
    assert capsys.readouterr().err == ""
