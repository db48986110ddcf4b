"""The kill-and-resume guarantee, with real processes and real SIGKILLs.

A run is killed at several moments (while loading, after a few chunks, midway, while
assembling the final file), each time restarted with ``--resume``; the file the last
run produces must equal, byte for byte, the file of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from embgemma_plugins.jobs.workdir import temp_path, work_path

from .cli_process import embed_command

ROWS, CHUNK = 1200, 40


def command(tiny_model, src, out, *extra):
    return embed_command(
        src,
        out,
        "--model",
        str(tiny_model),
        "--threads",
        "1",
        "--id-field",
        "id",
        "--keep",
        "lang",
        "--chunk-rows",
        str(CHUNK),
        "--batch-tokens",
        "2048",
        "-q",
        *extra,
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(7)
    words = ["alpha", "beta", "gamma", "delta", "search", "vector", "planet", "mars", "red"]
    path = tmp_path_factory.mktemp("resume") / "in.jsonl"
    with open(path, "w") as f:
        for i in range(ROWS):
            text = " ".join(rng.choices(words, k=rng.randint(1, 60)))
            f.write(json.dumps({"id": f"doc-{i}", "text": text, "lang": rng.choice("ab")}) + "\n")
    return path


def parts(out: Path) -> int:
    return len(list(work_path(out).glob("part-*.npz")))


def kill_when(cmd, condition, timeout=120.0) -> bool:
    """Start ``cmd``, SIGKILL it as soon as ``condition()`` holds; False if it finished."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if condition():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()
    return False


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_killed_runs_resume_to_identical_file(tmp_path, tiny_model, corpus, precision):
    extra = ["--precision", precision]
    ref = tmp_path / "ref.parquet"
    subprocess.run(command(tiny_model, corpus, ref, *extra), check=True)
    out = tmp_path / "out.parquet"
    started = time.monotonic()
    points = [
        lambda: time.monotonic() - started > 0.5,  # while importing / loading the model
        lambda: parts(out) >= 2,
        lambda: parts(out) >= ROWS // CHUNK // 2,
        lambda: temp_path(out).exists(),  # while assembling the final file
    ]
    killed = []
    for condition in points:
        started = time.monotonic()
        killed.append(kill_when(command(tiny_model, corpus, out, *extra, "--resume"), condition))
        assert killed[-1] is False or not out.exists()
        if out.exists():
            break
    print("killed at", killed)
    assert killed[:3] == [True, True, True]
    if not out.exists():
        subprocess.run(command(tiny_model, corpus, out, *extra, "--resume"), check=True)
    assert out.read_bytes() == ref.read_bytes()
    assert not work_path(out).exists() and not temp_path(out).exists()
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == [f"doc-{i}" for i in range(ROWS)]
    emb = table.column("embedding").combine_chunks().values.to_numpy()
    assert np.array_equal(
        emb, pq.read_table(ref).column("embedding").combine_chunks().values.to_numpy()
    )


def test_out_appears_only_at_the_end(tmp_path, tiny_model, corpus):
    out = tmp_path / "out.parquet"
    seen_before_end = []

    def watch():
        seen_before_end.append(out.exists())
        return parts(out) >= 3

    assert kill_when(command(tiny_model, corpus, out), watch)
    assert not any(seen_before_end) and not out.exists()
    assert work_path(out).is_dir()
