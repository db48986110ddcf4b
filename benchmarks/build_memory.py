"""Where a build's time and memory go: a command run with its process tree sampled.

``/usr/bin/time -v`` reports the peak of the largest single process; a build that runs a
step in a child process can hold memory in the parent meanwhile, so this samples the
resident memory of the whole tree (the sum over the command and every descendant) and of
the largest process, and splits the run into phases at each ``embgemma:`` line the
command prints on stderr (the build's progress lines)::

    python -m benchmarks.build_memory -- embgemma export --variant int8 --out /tmp/int8

Prints each phase's duration and peak, then the totals (``--json FILE`` keeps them).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

import psutil


@dataclass
class Phase:
    line: str
    start: float
    seconds: float = 0.0
    peak_tree_mb: float = 0.0
    peak_single_mb: float = 0.0


@dataclass
class Run:
    command: list[str]
    phases: list[Phase] = field(default_factory=list)
    seconds: float = 0.0
    peak_tree_mb: float = 0.0
    peak_single_mb: float = 0.0
    returncode: int = 0


def tree_rss(proc: psutil.Process) -> tuple[float, float]:
    """(sum, largest) resident memory in MB of ``proc`` and its descendants."""
    sizes = []
    for p in [proc, *proc.children(recursive=True)]:
        try:
            sizes.append(p.memory_info().rss)
        except psutil.Error:
            continue
    return sum(sizes) / 2**20, max(sizes, default=0) / 2**20


def run(command: list[str], interval: float) -> Run:
    record = Run(command)
    started = time.monotonic()
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, bufsize=1)
    record.phases.append(Phase("(start)", 0.0))
    lock = threading.Lock()

    def sample() -> None:
        proc = psutil.Process(child.pid)
        while child.poll() is None:
            try:
                total, single = tree_rss(proc)
            except psutil.Error:
                break
            with lock:
                phase = record.phases[-1]
                phase.peak_tree_mb = max(phase.peak_tree_mb, total)
                phase.peak_single_mb = max(phase.peak_single_mb, single)
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert child.stderr is not None
    for line in child.stderr:
        now = time.monotonic() - started
        sys.stderr.write(f"[{now:7.1f}s] {line}")
        if line.startswith("embgemma:"):
            with lock:
                record.phases.append(Phase(line.strip(), now))
    record.returncode = child.wait()
    sampler.join()
    record.seconds = time.monotonic() - started
    ends = [p.start for p in record.phases[1:]] + [record.seconds]
    for phase, end in zip(record.phases, ends, strict=True):
        phase.seconds = end - phase.start
    record.peak_tree_mb = max(p.peak_tree_mb for p in record.phases)
    record.peak_single_mb = max(p.peak_single_mb for p in record.phases)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=0.2, help="Seconds between samples.")
    parser.add_argument("--json", help="Write the phases and totals to this file.")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    record = run(command, args.interval)
    print(f"{'seconds':>8} {'tree MB':>8} {'single MB':>9}  phase (from the line that began it)")
    for p in record.phases:
        print(f"{p.seconds:8.1f} {p.peak_tree_mb:8.0f} {p.peak_single_mb:9.0f}  {p.line[:90]}")
    print(f"{record.seconds:8.1f} {record.peak_tree_mb:8.0f} {record.peak_single_mb:9.0f}  "
          f"total (exit code {record.returncode})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(asdict(record), f, indent=2)
    return record.returncode


if __name__ == "__main__":
    sys.exit(main())
