"""`embgemma embed` with long texts: chunk rows (--chunk-tokens, --late, --keep-text) and
--long truncate / mean / late, through the real CLI in a subprocess; kill and resume."""

from __future__ import annotations

import json
import subprocess
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from embgemma_plugins.cli.main import cli
from embgemma_plugins.jobs.output import read_metadata
from embgemma_plugins.jobs.workdir import temp_path, work_path
from tests.test_cli_resume import kill_when, parts
from tests.test_late import long_text

from .cli_process import embed_command

PROMPT = "title: none | text: "
LENGTHS = [3, 120, 0, 25, 700, 1, 60]  # sentences per document (700: about 10,000 tokens)


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    path = tmp_path_factory.mktemp("long") / "in.jsonl"
    rows = [{"id": f"d{i}", "text": long_text(n), "lang": "xy"[i % 2]}
            for i, n in enumerate(LENGTHS)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path, rows


def command(tiny_model, src, out, *extra):
    return embed_command(src, out, "--model", str(tiny_model), "--threads", "1", "--id-field",
                         "id", "--keep", "lang", "--chunk-rows", "2", "-q", *extra)


def embed(tiny_model, src, out, *extra):
    done = subprocess.run(command(tiny_model, src, out, *extra), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done


def vectors(table):
    return np.stack(table.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)


@pytest.mark.parametrize("late", [False, True])
def test_chunk_rows_are_the_api_chunks_with_exact_offsets(tmp_path, tiny_model, tiny_gemma,
                                                          docs, late):
    src, rows = docs
    out = tmp_path / "chunks.parquet"
    embed(tiny_model, src, out, "--chunk-tokens", "256", "--chunk-overlap", "32",
          "--keep-text", *(["--late"] if late else []))
    table = pq.read_table(out)
    assert table.column_names == ["id", "chunk", "start", "end", "text", "lang", "embedding"]
    expected = tiny_gemma.embed_chunks([r["text"] for r in rows], 256, 32, late=late)
    got = table.to_pylist()
    assert len(got) == sum(len(e.chunks) for e in expected)
    at = 0
    for row, item in zip(rows, expected, strict=True):
        mine = got[at : at + len(item.chunks)]
        at += len(item.chunks)
        assert [(g["id"], g["lang"]) for g in mine] == [(row["id"], row["lang"])] * len(mine)
        assert [(g["chunk"], g["start"], g["end"]) for g in mine] == [
            (c.index, c.start, c.end) for c in item.chunks]
        assert all(g["text"] == row["text"][g["start"] : g["end"]] for g in mine)
        assert mine[0]["start"] == 0 and mine[-1]["end"] == len(row["text"])
        counted = tiny_gemma.tokenize([g["text"] for g in mine], PROMPT).lengths
        assert counted.max() <= 256
        emb = vectors(table.slice(at - len(mine), len(mine)))
        assert np.abs(emb - item.vectors).max() < 1e-5
    meta = read_metadata(out)
    assert meta["chunking"] == {"max_tokens": 256, "overlap": 32, "late": late,
                                "keep_text": True, "offsets": "characters (Python str indices)"}
    assert meta["rows"] == len(got) and meta["input_rows"] == len(rows)


def test_small_chunks_take_an_overlap_that_fits(tmp_path, tiny_model, tiny_gemma, docs):
    """No --chunk-overlap with --chunk-tokens under 128: half a chunk, not a usage error."""
    src, rows = docs
    out = tmp_path / "small.parquet"
    embed(tiny_model, src, out, "--chunk-tokens", "40")
    assert read_metadata(out)["chunking"]["overlap"] == 20
    expected = tiny_gemma.chunk([r["text"] for r in rows], 40, 20)
    got = pq.read_table(out, columns=["start", "end"]).to_pylist()
    assert [(g["start"], g["end"]) for g in got] == [(c.start, c.end) for e in expected for c in e]


def test_killed_chunk_row_runs_resume_to_the_same_bytes(tmp_path, tiny_model, docs):
    src, _ = docs
    extra = ["--chunk-tokens", "128", "--late", "--keep-text", "--chunk-rows", "1"]
    ref = tmp_path / "ref.parquet"
    embed(tiny_model, src, ref, *extra)
    out = tmp_path / "out.parquet"
    started = time.monotonic()
    points = [lambda: time.monotonic() - started > 0.5, lambda: parts(out) >= 2,
              lambda: parts(out) >= 5, lambda: temp_path(out).exists()]
    killed = []
    for condition in points:
        started = time.monotonic()
        killed.append(kill_when(command(tiny_model, src, out, *extra, "--resume"), condition))
        if out.exists():
            break
    assert killed[:2] == [True, True]
    if not out.exists():
        subprocess.run(command(tiny_model, src, out, *extra, "--resume"), check=True)
    assert out.read_bytes() == ref.read_bytes()
    assert not work_path(out).exists()


def test_truncated_rows_are_named_in_the_summary_and_the_rejects_file(tmp_path, tiny_model,
                                                                      docs):
    src, rows = docs
    out = tmp_path / "cut.parquet"
    done = embed(tiny_model, src, out, "--max-length", "512")  # -q: warnings still show
    notes = [json.loads(x) for x in (tmp_path / "cut.parquet.rejects.jsonl").read_text()
             .splitlines()]  # fmt: skip
    cut = [n["row"] for n in notes]
    assert cut == [1, 4, 6] and all(n["embedded"] is True for n in notes)
    assert all("over --max-length 512; embedded from its first 512" in n["reason"] for n in notes)
    assert "3 row(s) longer than --max-length were truncated (" in done.stderr
    assert "ids 'd1', 'd4', 'd6'); each is listed in" in done.stderr
    assert pq.read_table(out).num_rows == len(rows)


@pytest.mark.parametrize("policy", ["mean", "late"])
def test_long_mean_and_late_are_the_api_vectors(tmp_path, tiny_model, docs, policy):
    from embgemma_plugins import EmbeddingGemma

    src, rows = docs
    out = tmp_path / f"{policy}.parquet"
    done = embed(tiny_model, src, out, "--max-length", "512", "--long", policy)
    assert not (tmp_path / f"{policy}.parquet.rejects.jsonl").exists()
    model = EmbeddingGemma(tiny_model, threads=1, max_length=512)
    expected = model.embed_documents([r["text"] for r in rows], long=policy)
    got = vectors(pq.read_table(out))
    assert np.abs(got - expected).max() < 1e-5
    assert read_metadata(out)["long_rows"] == 3 and done.returncode == 0


@pytest.mark.parametrize(("extra", "message"), [
    (["--late"], "--late needs --chunk-tokens"),
    (["--keep-text"], "--keep-text needs --chunk-tokens"),
    (["--chunk-overlap", "8"], "--chunk-overlap needs --chunk-tokens"),
    (["--chunk-tokens", "300", "--max-length", "256"], "--chunk-tokens 300 is more than"),
    (["--chunk-tokens", "64", "--chunk-overlap", "40"], "--chunk-overlap must be in 0..32"),
    (["--chunk-tokens", "64", "--long", "mean"], "--long is for whole texts"),
    (["--chunk-tokens", "64", "--keep", "start"], "--keep start: 'start' is a column"),
])
def test_chunk_row_misuse_is_a_usage_error(tmp_path, tiny_model, docs, extra, message):
    src, _ = docs
    result = CliRunner().invoke(cli, ["embed", str(src), str(tmp_path / "o.parquet"), "--model",
                                      str(tiny_model), *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_chunk_rows_need_parquet(tmp_path, tiny_model, docs):
    src, _ = docs
    result = CliRunner().invoke(cli, ["embed", str(src), str(tmp_path / "o.npy"), "--model",
                                      str(tiny_model), "--chunk-tokens", "64"])
    assert result.exit_code == 2 and "chunk rows need a .parquet OUT" in result.output
