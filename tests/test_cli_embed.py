"""``embgemma embed`` through click's CliRunner on the tiny model: formats, options,
outputs read back with pyarrow and compared with the core API's vectors."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from embgemma_plugins.cli.main import cli
from embgemma_plugins.jobs.output import read_metadata
from embgemma_plugins.jobs.quantise import quantise
from tests.texts import TEXTS

DOCS = [
    {"id": f"d{i}", "title": f"Title {i}" if i % 3 else None, "text": t, "n": i, "tags": ["a", i]}
    for i, t in enumerate(TEXTS)
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def embed(tiny_model, *args, input=None):
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["embed", *map(str, args), "--model", str(tiny_model), "--threads", "1"],
        input=input,
        catch_exceptions=False,
    )
    return result


def vectors(path):
    column = pq.read_table(path).column("embedding").combine_chunks()
    return column.values.to_numpy().reshape(len(column), -1)


def test_jsonl_to_parquet_matches_core_api(tmp_path, tiny_model, tiny_gemma):
    src = write_jsonl(tmp_path / "docs.jsonl", DOCS)
    out = tmp_path / "out.parquet"
    result = embed(
        tiny_model,
        src,
        out,
        "--id-field",
        "id",
        "--title-field",
        "title",
        "--keep",
        "n",
        "--keep",
        "tags",
        "--keep",
        "title",
    )
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.schema.names == ["id", "n", "tags", "title", "embedding"]
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 768)
    assert table.column("id").to_pylist() == [d["id"] for d in DOCS]
    assert table.column("n").to_pylist() == [str(d["n"]) for d in DOCS]
    assert table.column("tags").to_pylist()[1] == '["a", 1]'
    assert table.column("title").to_pylist() == [d["title"] for d in DOCS]
    expected = tiny_gemma.embed_documents(TEXTS, [d["title"] for d in DOCS])
    np.testing.assert_allclose(vectors(out), expected, atol=1e-6)
    meta = read_metadata(out)
    assert meta["rows"] == len(DOCS) and meta["dimensions"] == 768
    assert meta["prompt"] == "title: none | text: " and meta["title_field"] == "title"
    assert meta["package_version"] and meta["variant"] == "fp32"
    assert meta["input"]["path"] == str(src) and meta["input"]["format"] == "jsonl"
    assert "40 rows" not in result.output and f"{len(DOCS)} rows" in result.output


def test_row_number_ids_task_dim_and_small_chunks(tmp_path, tiny_model, tiny_gemma):
    src = write_jsonl(tmp_path / "docs.jsonl", DOCS)
    out = tmp_path / "out.parquet"
    result = embed(tiny_model, src, out, "--task", "STS", "--dim", "128", "--chunk-rows", "5")
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.schema.field("id").type == pa.int64()
    assert table.column("id").to_pylist() == list(range(len(DOCS)))
    assert pq.ParquetFile(out).num_row_groups == 3  # one per chunk
    parts = [tiny_gemma.embed(TEXTS[i : i + 5], task="STS") for i in range(0, len(TEXTS), 5)]
    full = np.concatenate(parts)[:, :128]
    full /= np.linalg.norm(full, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors(out), full, atol=1e-6)
    assert read_metadata(out)["prompt"] == "task: sentence similarity | query: "


@pytest.mark.parametrize("fmt", ["csv", "parquet", "text", "jsonl.gz", "stdin"])
def test_input_formats(tmp_path, tiny_model, tiny_gemma, fmt):
    rows = [{"id": f"x{i}", "text": t.replace("\n", " ")} for i, t in enumerate(TEXTS) if t]
    texts = [r["text"] for r in rows]
    stdin = None
    args: list[str] = ["--id-field", "id"]
    if fmt == "csv":
        import csv

        src = tmp_path / "in.csv"
        with open(src, "w", newline="") as f:
            w = csv.DictWriter(f, ["id", "text"])
            w.writeheader()
            w.writerows(rows)
    elif fmt == "parquet":
        src = tmp_path / "in.parquet"
        pq.write_table(pa.Table.from_pylist(rows), src)
    elif fmt == "text":
        src = tmp_path / "in.txt"
        src.write_text("\n".join(texts) + "\n\n")
        args = []
    elif fmt == "jsonl.gz":
        src = tmp_path / "in.jsonl.gz"
        with gzip.open(src, "wt") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    else:
        src, stdin = "-", "".join(json.dumps(r) + "\n" for r in rows)
        args += ["--format", "jsonl"]
    out = tmp_path / "out.parquet"
    result = embed(tiny_model, src, out, *args, input=stdin)
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    expected_ids = list(range(len(rows))) if fmt == "text" else [r["id"] for r in rows]
    assert table.column("id").to_pylist() == expected_ids
    np.testing.assert_allclose(vectors(out), tiny_gemma.embed_documents(texts), atol=1e-6)


def test_npy_output_with_sidecar(tmp_path, tiny_model, tiny_gemma):
    src = write_jsonl(tmp_path / "docs.jsonl", DOCS)
    out = tmp_path / "out.npy"
    assert embed(tiny_model, src, out, "--chunk-rows", "4").exit_code == 0
    got = np.load(out)
    assert got.dtype == np.float32 and got.shape == (len(DOCS), 768)
    np.testing.assert_allclose(got, tiny_gemma.embed_documents(TEXTS), atol=1e-6)
    meta = json.loads((tmp_path / "out.npy.json").read_text())
    assert meta["rows"] == len(DOCS) and meta["precision"] == "float32"


@pytest.mark.parametrize("precision", ["int8", "uint8", "binary", "ubinary"])
def test_precision(tmp_path, tiny_model, precision):
    src = write_jsonl(tmp_path / "docs.jsonl", DOCS)
    ref = tmp_path / "ref.parquet"
    assert embed(tiny_model, src, ref, "--chunk-rows", "5").exit_code == 0
    out = tmp_path / "q.parquet"
    result = embed(tiny_model, src, out, "--chunk-rows", "5", "--precision", precision)
    assert result.exit_code == 0, result.output
    meta = read_metadata(out)
    calibration = meta["calibration"]
    if precision in ("int8", "uint8"):
        assert calibration["chunk"] == 0 and calibration["rows"] == 5
        ranges = calibration["ranges"]
        np.testing.assert_array_equal(ranges, quantise_ranges(vectors(ref)[:5]))
    else:
        assert calibration is None
        ranges = None
    expected = quantise(vectors(ref), precision, ranges)
    got = vectors(out)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    assert meta["precision"] == precision


def quantise_ranges(v):
    return np.stack([v.min(0), v.max(0)])


def test_truncation_is_counted(tmp_path, tiny_model):
    src = write_jsonl(tmp_path / "docs.jsonl", DOCS)
    out = tmp_path / "out.parquet"
    result = embed(tiny_model, src, out, "--max-length", "16")
    assert result.exit_code == 0, result.output
    meta = read_metadata(out)
    assert meta["truncated"] > 0 and meta["max_length"] == 16
    assert f"{meta['truncated']} truncated" in result.output


def test_quiet_prints_nothing(tmp_path, tiny_model):
    src = write_jsonl(tmp_path / "docs.jsonl", DOCS)
    result = embed(tiny_model, src, tmp_path / "o.parquet", "-q")
    assert result.exit_code == 0 and result.output == ""


def test_progress_lines_when_not_a_terminal(tmp_path, tiny_model):
    src = write_jsonl(tmp_path / "docs.jsonl", DOCS)
    result = embed(
        tiny_model, src, tmp_path / "o.parquet", "--chunk-rows", "2", "--progress-interval", "0"
    )
    assert result.exit_code == 0
    lines = [line for line in result.output.splitlines() if "rows/s" in line]
    assert len(lines) > 3 and "tokens/s" in lines[0] and "%" in lines[0]
    assert "\r" not in result.output


@pytest.mark.parametrize("suffix", ["parquet", "npy"])
def test_empty_input_gives_an_empty_file(tmp_path, tiny_model, suffix):
    src = tmp_path / "empty.jsonl"
    src.write_text("\n\n")
    out = tmp_path / f"out.{suffix}"
    result = embed(tiny_model, src, out)
    assert result.exit_code == 0, result.output
    if suffix == "parquet":
        assert pq.read_table(out).num_rows == 0
        assert read_metadata(out)["rows"] == 0
    else:
        assert np.load(out).shape == (0, 768)


def test_progress_bar_on_a_terminal():
    import io

    from embgemma_plugins.cli.progress import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    assert Progress.choose(False, stream) == "bar" and Progress.choose(True, stream) == "quiet"
    progress = Progress("bar", 0, stream)
    progress.begin(0.0)
    progress.advance(10, 100, 0.5)
    progress.close()
    text = stream.getvalue()
    assert text.startswith("\r[############............]  50.0%") and "rows/s" in text
    assert text.endswith("\r\x1b[K")
