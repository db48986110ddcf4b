"""docs/cli.md is generated from --help and must not go stale."""

from __future__ import annotations

from pathlib import Path

from embgemma_plugins.cli.help_docs import render

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_cli_docs_are_current():
    assert DOC.is_file(), "run python scripts/gen_cli_docs.py"
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/cli.md is stale: run python scripts/gen_cli_docs.py"
    )


def test_every_command_documents_examples():
    text = render()
    for name in ("embed", "export", "models", "tasks", "info"):
        section = text.split(f"## embgemma {name}\n", 1)[1].split("\n## ", 1)[0]
        assert "Examples:" in section, name
