"""``--engine ray`` and ``embed_dataset`` on a real local Ray runtime (2 CPUs, loopback).

Each job's output is compared with the local engine's on the same input: the file
must be the same bytes (same rows, ids, order, vectors and metadata), its rejects
file too.  One job has an actor SIGKILLed midway and must still give that file.
The last test does the same with the real weights on a few hundred documents.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from embgemma_plugins.cli.main import cli
from embgemma_plugins.jobs.output import read_metadata
from embgemma_plugins.jobs.parts import read_stats
from embgemma_plugins.jobs.workdir import work_path
from integration_tests.conftest import REAL_MODEL, ROOT, read_jsonl
from tests import conftest as unit
from tests.cli_process import embed_command
from tests.texts import TEXTS

# Ray swaps 127.0.0.1 for the machine's routable address unless told this is no cluster.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray", reason="the ray extra is not installed")
# The unit tests' tiny model, exported once for this module.
tiny_checkpoint, tiny_corpus = unit.tiny_checkpoint, unit.tiny_corpus
tiny_model, tiny_gemma, cosines = unit.tiny_model, unit.tiny_gemma, unit.cosines
SHORT = [t for t in TEXTS if len(t) < 100]


@pytest.fixture(scope="module")
def cluster():
    """A private Ray runtime on 127.0.0.1 with 2 CPUs; its address for other drivers."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths are long
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        _temp_dir=temp,
        logging_level="warning",
    )
    try:
        address = ray.get_runtime_context().gcs_address
        assert address.startswith("127.0.0.1:"), address  # loopback only
        yield address
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def docs(n: int) -> list[dict]:
    return [
        {
            "id": f"d{i}",
            "text": f"{SHORT[i % len(SHORT)]} #{i}",
            "title": None if i % 3 else f"Title {i}",
            "n": i,
        }
        for i in range(n)
    ]


def write_jsonl(path: Path, rows: list[dict], bad_every: int = 0) -> Path:
    lines = []
    for i, r in enumerate(rows):
        lines.append(json.dumps(r, ensure_ascii=False))
        if bad_every and i % bad_every == bad_every - 1:
            lines += ['{"id": "broken", "text": ', "", json.dumps({"id": "x", "text": 7})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def embed(model, *args: object) -> None:
    threads = [] if "--threads" in args else ["--threads", "1"]
    result = CliRunner().invoke(
        cli,
        ["embed", *map(str, args), "--model", str(model), *threads, "-q"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output


def ray_command(
    model: Path, src: Path, out: Path, address: str, actors: int, *args: str
) -> list[str]:
    """``embgemma embed SRC OUT --engine ray`` as a user's own driver process runs it."""
    return embed_command(
        src,
        out,
        *args,
        "--model",
        str(model),
        "--engine",
        "ray",
        "--address",
        address,
        "--actors",
        str(actors),
        "--threads",
        "1",
        "-q",
    )


def same_output(ray_out: Path, local_out: Path) -> None:
    a, b = pq.read_table(ray_out), pq.read_table(local_out)
    assert a.column("id").to_pylist() == b.column("id").to_pylist()
    assert read_metadata(ray_out) == read_metadata(local_out)
    va = a.column("embedding").combine_chunks().values.to_numpy(zero_copy_only=False)
    vb = b.column("embedding").combine_chunks().values.to_numpy(zero_copy_only=False)
    assert np.array_equal(va, vb)  # bit-identical: the same chunks, batched the same way
    assert ray_out.read_bytes() == local_out.read_bytes()


def test_jsonl_job_gives_the_local_file(cluster, tiny_model, tmp_path, monkeypatch):
    from embgemma_plugins.ray import spans

    monkeypatch.setattr(spans, "SPAN_BYTES", 20_000)  # several spans, chunks across them
    src = write_jsonl(tmp_path / "docs.jsonl", docs(3000), bad_every=400)
    args = [
        "--id-field",
        "id",
        "--title-field",
        "title",
        "--keep",
        "title",
        "--keep",
        "n",
        "--chunk-rows",
        "100",
        "--on-error",
        "skip",
    ]
    embed(tiny_model, src, tmp_path / "local.parquet", *args)
    embed(tiny_model, src, tmp_path / "ray.parquet", *args, "--engine", "ray", "--actors", "2")
    same_output(tmp_path / "ray.parquet", tmp_path / "local.parquet")
    assert pq.read_metadata(tmp_path / "ray.parquet").num_rows == 3000
    rejects = (tmp_path / "ray.parquet.rejects.jsonl").read_text()
    assert rejects == (tmp_path / "local.parquet.rejects.jsonl").read_text()
    assert rejects.count("\n") == 14
    assert not work_path(tmp_path / "ray.parquet").exists()


def test_parquet_int8_with_row_number_ids(cluster, tiny_model, tmp_path):
    src = tmp_path / "docs.parquet"
    pq.write_table(pa.Table.from_pylist(docs(1200)), src, row_group_size=300)
    args = ["--dim", "256", "--precision", "int8", "--chunk-rows", "128", "--task", "STS"]
    embed(tiny_model, src, tmp_path / "local.parquet", *args)
    embed(tiny_model, src, tmp_path / "ray.parquet", *args, "--engine", "ray", "--actors", "2")
    same_output(tmp_path / "ray.parquet", tmp_path / "local.parquet")
    assert pq.read_table(tmp_path / "ray.parquet").column("id").to_pylist() == list(range(1200))
    assert read_metadata(tmp_path / "ray.parquet")["calibration"]["chunk"] == 0


@pytest.mark.parametrize("extra", [
    ["--chunk-tokens", "64", "--chunk-overlap", "8", "--late", "--keep-text"],
    ["--chunk-tokens", "96", "--chunk-overlap", "16"],  # the default 64 is over half of 96
    ["--max-length", "64", "--long", "mean"],
    ["--max-length", "64", "--long", "late"],
    ["--max-length", "64"],  # truncate: the rejects file names the rows cut
])
def test_long_texts_give_the_local_file(cluster, tiny_model, tmp_path, extra):
    from tests.test_late import long_text

    rows = [{"id": f"d{i}", "text": long_text(i % 9 * 3)} for i in range(60)]
    src = write_jsonl(tmp_path / "docs.jsonl", rows)
    args = ["--id-field", "id", "--chunk-rows", "8", *extra]
    embed(tiny_model, src, tmp_path / "local.parquet", *args)
    embed(tiny_model, src, tmp_path / "ray.parquet", *args, "--engine", "ray", "--actors", "2")
    same_output(tmp_path / "ray.parquet", tmp_path / "local.parquet")
    rejects = [tmp_path / f"{n}.parquet.rejects.jsonl" for n in ("ray", "local")]
    assert [r.exists() for r in rejects] == [extra == ["--max-length", "64"]] * 2
    if rejects[0].exists():
        assert rejects[0].read_text() == rejects[1].read_text()


def test_bad_row_stops_the_job_and_leaves_nothing(cluster, tiny_model, tmp_path):
    src = write_jsonl(tmp_path / "docs.jsonl", docs(300), bad_every=250)
    out = tmp_path / "ray.parquet"
    done = subprocess.run(
        ray_command(tiny_model, src, out, cluster, 1),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stderr
    assert f"{src}, line 251: malformed JSON" in done.stderr
    assert "or add --on-error skip" in done.stderr
    assert not out.exists() and not work_path(out).exists()
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == 2  # the failed job let its actor go


def test_embed_dataset_matches_the_core_api(cluster, tiny_model, tiny_gemma):
    from embgemma_plugins.ray import embed_dataset

    rows = docs(500)
    ds = ray.data.from_items(rows, override_num_blocks=4)
    out = embed_dataset(
        ds,
        model=str(tiny_model),
        title_field="title",
        keep=["n"],
        actors=2,
        threads=1,
        batch_rows=64,
    )
    got = sorted(out.take_all(), key=lambda r: int(r["id"][1:]))
    assert [r["id"] for r in got] == [r["id"] for r in rows]  # every row exactly once
    assert [r["n"] for r in got] == [str(r["n"]) for r in rows]
    vectors = np.stack([np.asarray(r["embedding"]) for r in got])
    expected = tiny_gemma.embed_documents([r["text"] for r in rows], [r["title"] for r in rows])
    assert cosines(vectors, expected).min() >= 0.99999


def test_a_killed_actor_loses_no_row_and_adds_none(cluster, tiny_model, tmp_path):
    src = write_jsonl(tmp_path / "docs.jsonl", docs(2000))
    args = ["--id-field", "id", "--chunk-rows", "20"]
    embed(tiny_model, src, tmp_path / "local.parquet", *args)
    out = tmp_path / "ray.parquet"
    command = ray_command(tiny_model, src, out, cluster, 2, *args)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed, parts_then = None, 0
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline and killed is None:
        parts = sorted(work_path(out).glob("part-*.npz"))
        if len(parts) >= 3:
            stats = read_stats(parts[0])
            assert stats is not None
            killed, parts_then = stats["pid"], len(parts)
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.02)
    _, stderr = proc.communicate(timeout=600)
    assert killed is not None, "the job ended before an actor could be killed"
    assert parts_then < 100  # killed midway: 2000 rows are 100 chunks
    assert proc.returncode == 0, stderr
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)
    same_output(out, tmp_path / "local.parquet")


def test_real_weights_few_hundred_documents(cluster, real_checkpoint, tmp_path):
    from embgemma_plugins.store.resolve import locate

    # The real store (conftest.real_store), which the Ray runtime inherited at start.
    model = locate(REAL_MODEL, "fp32").root
    rows = read_jsonl(ROOT / "integration_tests" / "data" / "retrieval.jsonl.gz")[:200]
    src = write_jsonl(tmp_path / "docs.jsonl", [{"id": r["id"], "text": r["text"]} for r in rows])
    args = [
        "--variant",
        "fp32",
        "--id-field",
        "id",
        "--max-length",
        "64",
        "--chunk-rows",
        "50",
        "--threads",
        "2",
    ]
    ray_out, local_out = tmp_path / "ray.parquet", tmp_path / "local.parquet"
    embed(model, src, ray_out, *args, "--engine", "ray", "--actors", "1")
    embed(model, src, local_out, *args)
    table = pq.read_table(ray_out)
    assert table.column("id").to_pylist() == [r["id"] for r in rows]
    assert read_metadata(ray_out)["model"] == REAL_MODEL
    got = table.column("embedding").combine_chunks().values.to_numpy().reshape(len(rows), 768)
    expected = pq.read_table(local_out).column("embedding").combine_chunks().values.to_numpy()
    assert cosines(got, expected.reshape(len(rows), 768)).min() >= 0.99999
    same_output(ray_out, local_out)  # and in fact bit-identical at equal --threads
