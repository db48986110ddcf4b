"""``embgemma --version``, ``models``, ``tasks``, ``info`` and every ``--help``."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from embgemma_plugins import __version__
from embgemma_plugins.cli.main import cli


def invoke(*args):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_version():
    assert invoke("--version") == f"embgemma, version {__version__}\n"


@pytest.mark.parametrize("name", ["embed", "export", "models", "tasks", "info"])
def test_help_has_examples(name):
    for flag in ("--help", "-h"):
        assert "Examples:" in invoke(name, flag)


def test_models_lists_the_store(private_store, tiny_model):
    slot = private_store / "local--tiny-00000000" / "fp32"
    if not slot.exists():
        shutil.copytree(tiny_model, slot)
    table = invoke("models")
    assert "MODEL" in table and "FIDELITY" in table and str(slot) in table
    line = next(row for row in table.splitlines() if row.endswith(str(slot)))
    assert "mean 1.00000 min 1.00000 top10 1.0000 (meets bar)" in line  # fp32 == reference
    rows = json.loads(invoke("models", "--json"))
    mine = [r for r in rows if r["path"] == str(slot)]
    assert mine and mine[0]["variant"] == "fp32" and mine[0]["size_bytes"] > 0


def test_tasks_shows_the_prompt_table(tiny_model):
    text = invoke("tasks", "--model", str(tiny_model))
    assert "'task: search result | query: '" in text and "title: {title} | text: " in text
    table = json.loads(invoke("tasks", "--model", str(tiny_model), "--json"))
    assert table["document"] == "title: none | text: "
    assert table["fact checking"] == "task: fact checking | query: "


def test_info(private_store):
    text = invoke("info")
    assert __version__ in text and "CPUExecutionProvider" in text
    assert str(private_store) in text
    data = json.loads(invoke("info", "--json"))
    assert data["store"] == str(private_store) and data["cpus"] >= 1
