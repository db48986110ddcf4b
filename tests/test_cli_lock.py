"""One run per OUT (issue 23, finding 1), with real processes.

A run that reads stdin holds OUT's lock for as long as the test keeps the pipe open, so
the second run meets a run that is really alive: it must fail at once (exit 1) naming the
first run's pid and start time, whatever its options, and leave the first run's chunks
alone; the first run then writes exactly its own rows.  A lock left by a SIGKILLed run is
taken over by the next.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from embgemma_plugins.jobs.workdir import work_path

from .cli_process import embed_command

ROWS = 24


def lock_path(out: Path) -> Path:
    """The lock beside OUT (file names are the contract: spelled out, so that these tests
    also run, and fail, on code without the lock)."""
    return out.parent / f".{out.name}.embgemma-lock"


def owner_path(out: Path) -> Path:
    return out.parent / f".{out.name}.embgemma-run.json"


def lines(tag: str, n: int = ROWS) -> bytes:
    return "".join(f"{tag} document number {i}\n" for i in range(n)).encode()


def command(tiny_model: Path, src: str | Path, out: Path, *extra: str) -> list[str]:
    return embed_command(src, out, "--model", str(tiny_model), "--threads", "1",
                         "--format", "text", "--chunk-rows", "4", *extra)


def holder(tiny_model: Path, out: Path, first: bytes = b"", *extra: str) -> subprocess.Popen:
    """A run reading stdin, started and waited for until it holds OUT's lock (and has
    embedded ``first``, if given, into finished chunks)."""
    proc = subprocess.Popen(command(tiny_model, "-", out, *extra), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    if first:
        proc.stdin.write(first)
        proc.stdin.flush()
    wanted = first.count(b"\n") // 4
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = len(list(work_path(out).glob("part-*.npz")))
        if owner_path(out).is_file() and done >= wanted:
            return proc
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("the first run never took the lock")


def finish(proc: subprocess.Popen, rest: bytes) -> tuple[int, str]:
    _, err = proc.communicate(rest, timeout=120)
    return proc.returncode, err.decode()


def reference(tiny_model: Path, tmp_path: Path, data: bytes) -> pq.Table:
    src = tmp_path / "ref.txt"
    src.write_bytes(data)
    out = tmp_path / "ref.parquet"
    subprocess.run(command(tiny_model, src, out, "-q"), check=True)
    return pq.read_table(out)


@pytest.mark.parametrize("flag", [None, "--overwrite", "--resume"])
def test_a_second_run_fails_at_once_and_the_first_keeps_its_rows(tiny_model, tmp_path, flag):
    out = tmp_path / "out.parquet"
    mine = lines("mine")
    first = holder(tiny_model, out, mine[: mine.index(b"number 8\n") + 9])  # 2 chunks done
    parts_before = sorted(p.name for p in work_path(out).iterdir())
    other = tmp_path / "other.txt"
    other.write_bytes(lines("other", 600))
    started = time.monotonic()
    second = subprocess.run(command(tiny_model, other, out, *([flag] if flag else [])),
                            capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 30
    assert second.returncode == 1, second.stderr
    assert f"{out} is being written by another run (pid {first.pid} on " in second.stderr
    assert "started 20" in second.stderr and "wait for it to finish" in second.stderr
    assert "Traceback" not in second.stderr
    assert sorted(p.name for p in work_path(out).iterdir()) >= parts_before
    code, err = finish(first, mine[mine.index(b"number 8\n") + 9:])
    assert code == 0, err
    assert pq.read_table(out).equals(reference(tiny_model, tmp_path, mine))
    assert not lock_path(out).exists() and not owner_path(out).exists()


def test_runs_started_together_one_runs_one_is_refused(tiny_model, tmp_path):
    out = tmp_path / "out.parquet"
    procs = [subprocess.Popen(command(tiny_model, "-", out), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    deadline = time.monotonic() + 60
    while all(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.01)
    loser = next(p for p in procs if p.poll() is not None)
    winner = next(p for p in procs if p is not loser)
    _, err = loser.communicate()
    assert loser.returncode == 1 and f"(pid {winner.pid} on " in err.decode()
    assert "Traceback" not in err.decode()
    code, err_w = finish(winner, lines("won"))
    assert code == 0, err_w
    assert pq.read_table(out).num_rows == ROWS


def test_the_lock_of_a_killed_run_is_taken_over(tiny_model, tmp_path):
    out = tmp_path / "out.parquet"
    data = lines("kept")
    first = holder(tiny_model, out, data[:data.index(b"number 12\n")])  # 3 chunks done
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    assert lock_path(out).exists() and json.loads(owner_path(out).read_text())["pid"] == first.pid
    src = tmp_path / "in.txt"
    src.write_bytes(data)
    again = subprocess.run(command(tiny_model, src, out, "--resume"), capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"taking over {out} from a run that ended without releasing it (pid {first.pid} " \
        in again.stderr
    assert "12 from the interrupted run" in again.stderr
    assert pq.read_table(out).equals(reference(tiny_model, tmp_path, data))
    assert not lock_path(out).exists() and not owner_path(out).exists()
