"""``embgemma embed`` as a user runs it, on the real weights and the shipped sample.

The README's main-job command on examples/sample.jsonl, read back with pyarrow and
compared with the core API; then the same run killed with SIGKILL and resumed, which
must give the identical file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from embgemma_plugins.jobs.output import read_metadata
from embgemma_plugins.jobs.workdir import work_path
from integration_tests.conftest import REAL_MODEL, ROOT, read_jsonl
from tests.cli_process import embed_command

SAMPLE = ROOT / "examples" / "sample.jsonl"
CHUNK = "8"


def command(out: Path, *extra: str) -> list[str]:
    return embed_command(
        SAMPLE,
        out,
        "--variant",
        "fp32",
        "--id-field",
        "id",
        "--title-field",
        "title",
        "--keep",
        "title",
        "--chunk-rows",
        CHUNK,
        *extra,
    )


@pytest.fixture(scope="module")
def reference(real_fp32, tmp_path_factory) -> Path:
    if not SAMPLE.is_file():
        pytest.skip(f"{SAMPLE} is missing")
    out = tmp_path_factory.mktemp("real") / "sample.parquet"
    done = subprocess.run(command(out), capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr
    assert f"{len(read_jsonl(SAMPLE))} rows -> {out}" in done.stderr
    return out


def test_sample_becomes_parquet_matching_the_core_api(reference, real_fp32):
    docs = read_jsonl(SAMPLE)
    table = pq.read_table(reference)
    assert table.column("id").to_pylist() == [d["id"] for d in docs]
    assert table.column("title").to_pylist() == [d["title"] for d in docs]
    got = table.column("embedding").combine_chunks().values.to_numpy().reshape(len(docs), 768)
    expected = np.concatenate(
        [
            real_fp32.embed_documents(
                [d["text"] for d in docs[i : i + 8]], [d["title"] for d in docs[i : i + 8]]
            )
            for i in range(0, len(docs), 8)
        ]
    )
    np.testing.assert_allclose(got, expected, atol=2e-6)
    meta = read_metadata(reference)
    assert meta["model"] == REAL_MODEL and meta["model_revision"] == real_fp32.revision
    assert meta["variant"] == "fp32" and meta["rows"] == len(docs)
    assert meta["input"]["path"] == str(SAMPLE)


def test_killed_real_run_resumes_to_the_identical_file(reference, tmp_path):
    out = tmp_path / "sample.parquet"
    proc = subprocess.Popen(command(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 1800
    while proc.poll() is None and time.monotonic() < deadline:
        if len(list(work_path(out).glob("part-*.npz"))) >= 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not out.exists()
    done = subprocess.run(command(out, "--resume"), capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr
    assert "from the interrupted run" in done.stderr
    assert out.read_bytes() == reference.read_bytes()
