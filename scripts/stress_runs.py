"""The cases of scripts/stress.py that need more than an input: concurrent runs, signals,
a disk that fills up, a read-only folder, a damaged model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from stress import Ctx, Skip


def docs(n: int, tag: str) -> bytes:
    return "".join(json.dumps({"id": f"{tag}-{i}", "text": f"{tag} text {i} " + "w " * (i % 5)})
                   + "\n" for i in range(n)).encode()


def work(out: Path) -> Path:
    return out.parent / f".{out.name}.embgemma-work"


def until(condition: Callable[[], bool], proc: subprocess.Popen[bytes] | None = None,
          timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.005)
    return False


def parts(out: Path) -> int:
    return len(list(work(out).glob("part-*.npz")))


def locked(out: Path) -> bool:
    return (out.parent / f".{out.name}.embgemma-run.json").is_file()


@contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    path.mkdir()
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode:
        raise Skip(f"needs root to mount a tmpfs ({done.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def overwrite_while_running(ctx: Ctx) -> None:
    out = ctx.folder / "out.parquet"
    mine = docs(60, "A")
    first = ctx.start("-", out, "--format", "jsonl", "--id-field", "id", "--chunk-rows", "8")
    assert first.stdin is not None
    first.stdin.write(mine[: len(mine) // 2])
    first.stdin.flush()
    until(lambda: parts(out) >= 2, first)
    other = ctx.folder / "other.jsonl"
    other.write_bytes(docs(80, "B"))
    code, err = ctx.embed(other, out, "--id-field", "id", "--overwrite")
    ctx.expect(code == 1 and f"(pid {first.pid} on " in err, err)
    ctx.wait(first, mine[len(mine) // 2:])
    import pyarrow.parquet as pq

    ids = pq.read_table(out).column("id").to_pylist()
    ctx.expect(all(i.startswith("A-") for i in ids), "rows of the other run")
    ctx.outcome.story, ctx.outcome.rows_in = "--overwrite refused at once; A's rows only", 60
    ctx.count(out)


def started_together(ctx: Ctx) -> None:
    out = ctx.folder / "out.parquet"
    procs = [ctx.start("-", out, "--format", "jsonl") for _ in range(2)]
    until(lambda: any(p.poll() is not None for p in procs))
    loser = next(p for p in procs if p.poll() is not None)
    winner = next(p for p in procs if p is not loser)
    code, err = ctx.wait(loser)
    ctx.expect(code == 1 and "is being written by another run" in err, err)
    ctx.wait(winner, docs(40, "W"))
    ctx.outcome.story, ctx.outcome.rows_in = "one runs, the other is refused", 40
    ctx.count(out)


def killed_holder(ctx: Ctx) -> None:
    out = ctx.folder / "out.parquet"
    data = docs(50, "K")
    first = ctx.start("-", out, "--format", "jsonl", "--chunk-rows", "8")
    assert first.stdin is not None
    first.stdin.write(data[: len(data) // 2])
    first.stdin.flush()
    until(lambda: parts(out) >= 2, first)
    os.kill(first.pid, signal.SIGKILL)
    ctx.wait(first)
    src = ctx.folder / "in.jsonl"
    src.write_bytes(data)
    code, err = ctx.embed(src, out, "--chunk-rows", "8", "--resume")
    ctx.expect(code == 0 and "taking over" in err and "from the interrupted run" in err, err)
    ctx.outcome.story, ctx.outcome.rows_in = "SIGKILL; lock taken over, --resume", 50
    ctx.count(out)


def signalled(sig: int, when: str) -> Callable[[Ctx], None]:
    def case(ctx: Ctx) -> None:
        out = ctx.folder / "out.parquet"
        src = ctx.folder / "in.jsonl"
        src.write_bytes(docs(400, "S"))
        fmt = ["--format", "csv"] if when == "start-up" else ["--format", "jsonl"]
        proc = ctx.start("-", out, *fmt, "--chunk-rows", "20")
        if when == "start-up":  # the lock is held, the CSV header not read yet
            until(lambda: locked(out), proc)
            os.kill(proc.pid, sig)
            code, err = ctx.wait(proc)
        else:
            assert proc.stdin is not None
            proc.stdin.write(src.read_bytes()[:20_000])
            proc.stdin.flush()
            until(lambda: parts(out) >= 2, proc)
            os.kill(proc.pid, sig)
            code, err = ctx.wait(proc)
        ctx.expect(code == 130 and "interrupted" in err, err)
        ctx.embed(src, out, "--chunk-rows", "20", "--resume")
        name = signal.Signals(sig).name
        ctx.outcome.story, ctx.outcome.rows_in = f"{name} at {when}: 130, then --resume", 400
        ctx.count(out)
    return case


def killed_assembling(ctx: Ctx) -> None:
    out = ctx.folder / "out.parquet"
    src = ctx.folder / "in.jsonl"
    src.write_bytes(docs(1500, "Z"))
    proc = ctx.start(src, out, "--chunk-rows", "50")
    tmp = out.parent / f".{out.name}.tmp"
    hit = until(tmp.exists, proc)
    if hit:
        os.kill(proc.pid, signal.SIGKILL)
    ctx.wait(proc)
    if not out.exists():
        ctx.embed(src, out, "--chunk-rows", "50", "--resume")
    ctx.outcome.story = ("SIGKILL while assembling, --resume" if hit
                         else "finished before the kill")
    ctx.outcome.rows_in = 1500
    ctx.count(out)


def full_disk(size: str, suffix: str, where: str) -> Callable[[Ctx], None]:
    def case(ctx: Ctx) -> None:
        src = ctx.folder / "in.jsonl"
        src.write_bytes(docs(300, "F"))
        with tmpfs(ctx.folder / "disk", size) as disk:
            out = disk / f"out.{suffix}"
            code, err = ctx.embed(src, out, "--chunk-rows", "20")
            ctx.expect(code == 1 and "No space left on device" in err
                       and "--resume" in err, err)
            ctx.expect(not [p for p in disk.rglob("*.tmp")], "temporary files left")
            subprocess.run(["mount", "-o", "remount,size=32m", str(disk)], check=True)
            ctx.embed(src, out, "--chunk-rows", "20", "--resume")
            ctx.outcome.story = f"disk full {where}; room made, --resume"
            ctx.outcome.rows_in = 300
            ctx.count(out)
    return case


def read_only(ctx: Ctx) -> None:
    src = ctx.folder / "in.jsonl"
    src.write_bytes(docs(20, "R"))
    with tmpfs(ctx.folder / "ro", "64k", read_only=True) as ro:
        code, err = ctx.embed(src, ro / "out.parquet")
        ctx.expect(code == 2 and "cannot write in the folder of OUT" in err, err)
    out = ctx.folder / "out.parquet"
    ctx.embed(src, out)
    ctx.outcome.story, ctx.outcome.rows_in = "usage error; written elsewhere", 20
    ctx.count(out)


def damaged_model(ctx: Ctx) -> None:
    copy = ctx.folder / "model"
    shutil.copytree(ctx.model, copy)
    weights = max(copy.iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    src = ctx.folder / "in.jsonl"
    src.write_bytes(docs(20, "M"))
    out = ctx.folder / "out.parquet"
    code, err = ctx.embed(src, out, model=copy)
    ctx.expect(code == 1 and f"{weights.name}: sha256 differs" in err
               and "Replace it with" in err, err)
    shutil.copy2(ctx.model / weights.name, weights)
    ctx.embed(src, out, model=copy)
    ctx.outcome.story, ctx.outcome.rows_in = "a flipped byte refused; file restored", 20
    ctx.count(out)


RUNS: dict[str, Callable[[Ctx], None]] = {
    "overwrite-while-running": overwrite_while_running,
    "two-runs-started-together": started_together,
    "killed-run-lock-taken-over": killed_holder,
    "sigint-during-start-up": signalled(signal.SIGINT, "start-up"),
    "sigint-while-embedding": signalled(signal.SIGINT, "embedding"),
    "sigterm-while-embedding": signalled(signal.SIGTERM, "embedding"),
    "sigkill-while-assembling": killed_assembling,
    "disk-full-embedding": full_disk("384k", "parquet", "while embedding"),
    "disk-full-assembling-parquet": full_disk("1400k", "parquet", "while assembling"),
    "disk-full-assembling-npy": full_disk("1400k", "npy", "while assembling"),
    "read-only-folder": read_only,
    "damaged-model": damaged_model,
}
