"""`embgemma search` ranks an embed output with the model recorded in its metadata."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
from click.testing import CliRunner

from embgemma_plugins.cli.main import cli

DOCS = [
    {"id": "mars", "title": "Mars", "text": "Mars is often referred to as the Red Planet."},
    {"id": "venus", "title": "Venus", "text": "Venus is Earth's twin in size."},
    {"id": "code", "title": "add", "text": "def add(a, b):\n    return a + b\n"},
    {"id": "ru", "title": "Привет", "text": "Привет, мир! Это пример текста."},
]


def _embed(tmp_path, tiny_model, *extra):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    out = tmp_path / "out.parquet"
    args = [
        "embed",
        str(src),
        str(out),
        "--model",
        str(tiny_model),
        "--id-field",
        "id",
        "--title-field",
        "title",
        "--keep",
        "title",
        "-q",
        *extra,
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return out


def test_search_ranks_rows_by_cosine_with_the_query_prompt(tmp_path, tiny_model, tiny_gemma):
    out = _embed(tmp_path, tiny_model)
    result = CliRunner().invoke(cli, ["search", str(out), "Which planet is red?", "--top", "3"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    table = pq.read_table(out)
    vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    scores = vectors @ tiny_gemma.embed_queries(["Which planet is red?"])[0]
    order = np.argsort(-scores)[:3]
    assert len(lines) == 3
    for rank, (line, row) in enumerate(zip(lines, order, strict=True), 1):
        number, score, *fields = line.split()
        assert int(number) == rank
        assert abs(float(score) - scores[row]) < 1e-4
        assert f"id={DOCS[row]['id']}" in fields


def test_search_at_smaller_dimensions(tmp_path, tiny_model):
    out = _embed(tmp_path, tiny_model, "--dim", "128")
    result = CliRunner().invoke(cli, ["search", str(out), "planet", "-k", "10"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip().splitlines()) == len(DOCS)
    assert "warning" not in result.stderr


def test_search_refuses_quantised_or_foreign_files(tmp_path, tiny_model):
    out = _embed(tmp_path, tiny_model, "--precision", "binary")
    result = CliRunner().invoke(cli, ["search", str(out), "planet"])
    assert result.exit_code == 2 and "needs float32" in result.output
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pq.read_table(out).replace_schema_metadata(None), foreign)
    result = CliRunner().invoke(cli, ["search", str(foreign), "planet"])
    assert result.exit_code == 2 and "no embgemma metadata" in result.output
