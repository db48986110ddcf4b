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


def _embed_npy(tmp_path, tiny_model, *extra):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    out = tmp_path / "out.npy"
    result = CliRunner().invoke(cli, ["embed", str(src), str(out), "--model", str(tiny_model),
                                      "-q", *extra])
    assert result.exit_code == 0, result.output
    return out


def test_search_ranks_the_rows_of_a_npy_output(tmp_path, tiny_model, tiny_gemma):
    out = _embed_npy(tmp_path, tiny_model, "--dimensions", "256", "--id-field", "id")
    result = CliRunner().invoke(cli, ["search", str(out), "Which planet is red?", "-k", "3"])
    assert result.exit_code == 0, result.output
    assert "out.npy keeps no ids (the values of --id-field id are not in it)" in result.stderr
    vectors = np.load(out)
    assert vectors.shape == (len(DOCS), 256)
    query = tiny_gemma.embed_queries(["Which planet is red?"])
    scores = vectors @ (query[0, :256] / np.linalg.norm(query[0, :256]))
    order = np.argsort(-scores)[:3]
    lines = result.stdout.strip().splitlines()
    assert [line.split()[2] for line in lines] == [f"row={r}" for r in order]
    for line, row in zip(lines, order, strict=True):
        assert abs(float(line.split()[1]) - scores[row]) < 1e-4


def test_search_refuses_files_it_cannot_read_with_a_sentence(tmp_path, tiny_model):
    out = _embed_npy(tmp_path, tiny_model)
    lonely = tmp_path / "lonely.npy"
    lonely.write_bytes(out.read_bytes())
    text = tmp_path / "notes.txt"
    text.write_text("not vectors\n")
    short = tmp_path / "short.npy"
    np.save(short, np.load(out)[:2])
    (tmp_path / "short.npy.json").write_text((tmp_path / "out.npy.json").read_text())
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1" + b"\0" * 20)
    cases = [
        (lonely, "has no lonely.npy.json beside it"),
        (text, "is neither a Parquet file nor a .npy array"),
        (short, "do not belong together"),
        (broken, "cannot be read as Parquet"),
    ]
    for path, message in cases:
        result = CliRunner().invoke(cli, ["search", str(path), "planet"])
        assert result.exit_code == 2, (path, result.output)
        assert message in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_embed_takes_dimensions_and_dim_alike(tmp_path, tiny_model):
    vectors = []
    for flag in ("--dimensions", "--dim"):
        folder = tmp_path / flag.strip("-")
        folder.mkdir()
        out = _embed(folder, tiny_model, flag, "128")
        vectors.append(np.stack(pq.read_table(out).column("embedding").to_numpy(
            zero_copy_only=False)))
    assert vectors[0].shape == (len(DOCS), 128)
    np.testing.assert_array_equal(vectors[0], vectors[1])
