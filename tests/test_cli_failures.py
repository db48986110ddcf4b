"""Every failure a sentence (issue 23): real processes on real failing file systems.

Each test is one scenario of the issue, run as a user runs it: the exit code, a message
naming what failed, what was kept and the command to go on, no traceback, no temporary
file left behind, and the command the message suggests really working.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from embgemma_plugins.jobs.workdir import work_path

from .cli_process import embed_command
from .disk import everything, resize, tmpfs

ROWS = 300


# File names are the contract: spelled out, so these tests also run (and fail) on code
# that lacks the lock or the row map.
def lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.embgemma-lock"


def owner_path(out: Path) -> Path:
    return out.parent / f".{out.name}.embgemma-run.json"


def row_map_path(out: Path) -> Path:
    return out.with_name(out.name + ".rows.npy")


def sidecar(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def cli(tiny_model: Path, src: Path | str, out: Path, *extra: str, stdin: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(embed_command(src, out, "--model", str(tiny_model), "--threads", "1",
                                        *extra), capture_output=True, text=True, input=stdin,
                          timeout=300)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n"
                            for i, t in enumerate(texts)))
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return jsonl(tmp_path / "in.jsonl", [f"document {i} " + "word " * (i % 7)
                                         for i in range(ROWS)])


def clean(folder: Path) -> None:
    """Nothing a run leaves behind but its results and (after a failure) its parts."""
    left = everything(folder)
    assert not [n for n in left if n.endswith(".tmp")], left
    assert not [n for n in left if "embgemma-lock" in n or "embgemma-run" in n], left


def test_full_disk_while_embedding(tiny_model, tmp_path, corpus):
    ref = tmp_path / "ref.parquet"
    assert cli(tiny_model, corpus, ref, "--chunk-rows", "20", "--id-field", "id").returncode == 0
    with tmpfs(tmp_path / "disk", "384k") as disk:
        out = disk / "out.parquet"
        full = cli(tiny_model, corpus, out, "--chunk-rows", "20", "--id-field", "id")
        assert full.returncode == 1, full.stderr
        assert "No space left on device (the disk holding" in full.stderr
        assert "finished chunk(s) are kept in" in full.stderr
        assert "make room and rerun the same command with --resume" in full.stderr
        clean(disk)
        assert not out.exists() and list(work_path(out).glob("part-*.npz"))
        resize(disk, "16m")
        again = cli(tiny_model, corpus, out, "--chunk-rows", "20", "--id-field", "id",
                    "--resume")
        assert again.returncode == 0, again.stderr
        assert "from the interrupted run" in again.stderr
        assert out.read_bytes() == ref.read_bytes()
        clean(disk)


def test_full_disk_while_assembling_npy(tiny_model, tmp_path, corpus):
    ref = tmp_path / "ref.npy"
    assert cli(tiny_model, corpus, ref, "--chunk-rows", "20").returncode == 0
    with tmpfs(tmp_path / "disk", "1400k") as disk:  # the parts fit, the final file does not
        out = disk / "out.npy"
        full = cli(tiny_model, corpus, out, "--chunk-rows", "20")
        assert full.returncode == 1, full.stderr
        assert "No space left on device" in full.stderr
        assert "15 finished chunk(s) are kept" in full.stderr and "--resume" in full.stderr
        clean(disk)
        assert not out.exists() and not sidecar(out).exists()
        resize(disk, "16m")
        assert cli(tiny_model, corpus, out, "--chunk-rows", "20", "--resume").returncode == 0
        assert out.read_bytes() == ref.read_bytes()
        clean(disk)


def test_read_only_folder_is_a_usage_error(tiny_model, tmp_path, corpus):
    with tmpfs(tmp_path / "ro", "64k", read_only=True) as ro:
        done = cli(tiny_model, corpus, ro / "out.parquet")
        assert done.returncode == 2
        assert f"cannot write in the folder of OUT, {ro} (read-only)" in done.stderr


def holder(tiny_model: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    """A run reading stdin, returned once it holds OUT's lock. SIGINT is restored to its
    default in the child: a suite started in the background (``cmd &``) ignores SIGINT, and
    Python keeps an inherited SIG_IGN, so the run would never see the interrupt."""
    proc = subprocess.Popen(embed_command("-", out, "--model", str(tiny_model), "--threads", "1",
                                          *extra), stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not owner_path(out).is_file() and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    return proc


def test_sigint_during_start_up_exits_130(tiny_model, tmp_path):
    out = tmp_path / "out.parquet"
    proc = holder(tiny_model, out, "--format", "csv")  # waiting for the CSV header: start-up
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"interrupted while starting; nothing was written" in err and b"Traceback" not in err
    assert not work_path(out).exists() and not out.exists()
    clean(tmp_path)


def test_sigint_while_embedding_keeps_chunks_and_exits_130(tiny_model, tmp_path):
    out = tmp_path / "out.parquet"
    proc = holder(tiny_model, out, "--format", "text", "--chunk-rows", "2")
    assert proc.stdin is not None
    proc.stdin.write(b"one\ntwo\nthree\nfour\nfive\n")
    proc.stdin.flush()
    while len(list(work_path(out).glob("part-*.npz"))) < 2:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"interrupted; 2 finished chunk(s) are kept in" in err and b"--resume" in err
    assert b"Traceback" not in err
    clean(tmp_path)


def test_exit_codes_0_1_2(tiny_model, tmp_path, corpus):
    assert cli(tiny_model, corpus, tmp_path / "ok.parquet").returncode == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": 3}\n')
    assert cli(tiny_model, bad, tmp_path / "bad.parquet").returncode == 1
    assert cli(tiny_model, corpus, tmp_path / "out.csv").returncode == 2


def test_on_long_error_hint_names_what_works(tiny_model, tmp_path):
    texts = [f"short text {i}" for i in range(9)]
    texts[6] = "a long text " * 40
    src = jsonl(tmp_path / "in.jsonl", texts)
    out = tmp_path / "out.parquet"
    args = ["--chunk-rows", "2", "--max-length", "32", "--on-long", "error"]
    done = cli(tiny_model, src, out, *args)
    assert done.returncode == 1
    assert f"{src}, line 7 (row 6, id 6): text is " in done.stderr
    assert "longer than --max-length 32" in done.stderr
    assert "3 finished chunk(s) are kept" in done.stderr
    assert "rerun the same command with --resume --on-long truncate" in done.stderr
    assert "--max-length above 32 (at most 2048) and --overwrite" in done.stderr
    assert "--on-error skip" not in done.stderr
    again = cli(tiny_model, src, out, *args, "--resume", "--on-long", "truncate")
    assert again.returncode == 0, again.stderr
    assert "1 row(s) longer than --max-length were truncated" in again.stderr


def test_row_error_hint_names_what_works(tiny_model, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(f'{{"text": "row {i}"}}\n' for i in range(6)) + "{broken\n"
                   + '{"text": "last"}\n')
    out = tmp_path / "out.parquet"
    done = cli(tiny_model, src, out, "--chunk-rows", "2")
    assert done.returncode == 1
    assert "3 finished chunk(s) are kept" in done.stderr
    assert "fix the input and rerun the same command with --resume (or with --on-error skip " \
        "added, to list such rows in" in done.stderr
    again = cli(tiny_model, src, out, "--chunk-rows", "2", "--resume", "--on-error", "skip")
    assert again.returncode == 0, again.stderr
    assert pq.read_table(out).column("id").to_pylist() == [0, 1, 2, 3, 4, 5, 7]


def test_a_failed_column_check_leaves_nothing_to_resume(tiny_model, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("id,body\na,hello\nb,world\n")
    out = tmp_path / "out.parquet"
    wrong = cli(tiny_model, src, out)
    assert wrong.returncode == 1 and "the CSV header has no column 'text'" in wrong.stderr
    assert not work_path(out).exists()
    right = cli(tiny_model, src, out, "--text-field", "body", "--id-field", "id")
    assert right.returncode == 0, right.stderr
    clean(tmp_path)


@pytest.mark.parametrize("target", ["input", "out", "existing"])
def test_rejects_may_not_replace_a_file(tiny_model, tmp_path, target):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "fine"}\n{"text": 3}\n')
    before = src.read_bytes()
    out = tmp_path / "out.parquet"
    path = {"input": src, "out": out, "existing": tmp_path / "precious.jsonl"}[target]
    if target == "existing":
        path.write_text("precious\n")
    flags = ["--on-error", "skip", "--rejects", str(path)]
    done = cli(tiny_model, src, out, *flags, *(["--overwrite"] if target != "existing" else []))
    assert done.returncode == 2
    message = {"input": "is the input file", "out": "is OUT",
               "existing": "exists; add --overwrite"}[target]
    assert message in done.stderr
    assert src.read_bytes() == before and not out.exists()
    if target == "existing":
        assert path.read_text() == "precious\n"
        assert cli(tiny_model, src, out, *flags, "--overwrite").returncode == 0
        assert json.loads(path.read_text())["line"] == 2


def test_out_may_not_be_the_input(tiny_model, tmp_path, corpus):
    src = tmp_path / "in.parquet"
    assert cli(tiny_model, corpus, src).returncode == 0
    done = cli(tiny_model, src, src, "--overwrite", "--text-field", "id")
    assert done.returncode == 2 and "OUT is the input file" in done.stderr


def test_npy_with_skipped_rows_writes_the_row_map(tiny_model, tmp_path, tiny_gemma):
    texts = [f"text number {i}" for i in range(10)]
    lines = [json.dumps({"text": t}) for t in texts]
    lines[3], lines[7] = "{oops", '{"text": 7}'
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.npy"
    done = cli(tiny_model, src, out, "--on-error", "skip", "--chunk-rows", "4", "-q")
    assert done.returncode == 0, done.stderr
    assert f"note: 2 row(s) were skipped, so vector i of out.npy is input row numpy.load(" \
        f"'{row_map_path(out)}')[i]" in done.stderr
    rows = np.load(row_map_path(out))
    assert rows.tolist() == [0, 1, 2, 4, 5, 6, 8, 9]
    expected = tiny_gemma.embed_documents([texts[i] for i in rows])
    np.testing.assert_allclose(np.load(out), expected, atol=1e-6)
    assert json.loads(sidecar(out).read_text())["row_map"] == row_map_path(out).name
    src.write_text("\n".join(json.dumps({"text": t}) for t in texts) + "\n")
    assert cli(tiny_model, src, out, "--on-error", "skip", "--overwrite").returncode == 0
    assert not row_map_path(out).exists() and np.load(out).shape == (10, 768)


def test_truncation_report_names_the_rows(tiny_model, tmp_path):
    texts = ["short"] * 12
    for i in (1, 4, 8):
        texts[i] = "a long text " * 30
    src = jsonl(tmp_path / "in.jsonl", texts)
    done = cli(tiny_model, src, tmp_path / "out.parquet", "--max-length", "32")
    assert done.returncode == 0
    assert f"3 row(s) longer than --max-length were truncated ({src}, lines 2, 5, 9; ids " \
        in done.stderr


def test_an_unclosed_quote_stops_naming_its_line(tiny_model, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text('id,text\na,hello\nb,"never closed\nc,third\nd,fourth\n')
    out = tmp_path / "out.parquet"
    done = cli(tiny_model, src, out, "--on-error", "skip")
    assert done.returncode == 1
    assert f"{src}, line 3: a quoted field opened on this line is still open at the end " \
        "of the file" in done.stderr
    assert not out.exists() and not work_path(out).exists()
    clean(tmp_path)
    assert not lock_path(out).exists()
