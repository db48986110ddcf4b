"""Peak RSS of ``embgemma embed`` on N real documents (repeated to reach N rows).

The memory target is about the CLI path a user runs on a big file, so this runs the
real command in a child process and reads its peak RSS with
``getrusage(RUSAGE_CHILDREN)`` from a fresh wrapper process (the wrapper's own
children are only that command).  Peak RSS should not grow with N (the CLI streams
in chunks; tests/test_cli_memory.py checks that), so two sizes show the trend::

    python -m embgemma_plugins.bench.rss_cli --variant int8 --rows 1000 --rows 4000
    python -m embgemma_plugins.bench.rss_cli --variant int8 --rows 100000   # the target
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from embgemma_plugins.bench import corpus
from embgemma_plugins.store.layout import DEFAULT_MODEL
from embgemma_plugins.store.registry import variants

WRAPPER = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:])
print("PEAK_KB", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.returncode)
"""


@dataclass(frozen=True)
class CliRss:
    variant: str
    rows: int
    peak_rss_mb: float
    seconds: float


def write_rows(path: Path, n: int) -> None:
    """``n`` JSONL rows cycling through the real benchmark documents, each with its id."""
    docs = corpus.documents()
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"r{i}", "text": docs[i % len(docs)]}) + "\n")


def measure(model: str, variant: str | None, rows: int, extra: Sequence[str] = ()) -> CliRss:
    """Run ``embgemma embed`` on ``rows`` rows; its peak RSS in MB and wall time."""
    with tempfile.TemporaryDirectory(prefix="embgemma-rss-") as tmp:
        src, out = Path(tmp) / "in.jsonl.gz", Path(tmp) / "out.parquet"
        write_rows(src, rows)
        cmd = [sys.executable, "-c", WRAPPER, sys.executable, "-m", "embgemma_plugins.cli.main",
               "embed", str(src), str(out), "--model", model, "-q", *extra]
        if variant:
            cmd += ["--variant", variant]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("PEAK_KB")), "")
        parts = line.split()
        if done.returncode != 0 or len(parts) != 3 or parts[2] != "0":
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise RuntimeError(f"embgemma embed failed on {rows} rows:\n{tail}")
        return CliRss(variant or "default", rows, int(parts[1]) / 1024, seconds)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m embgemma_plugins.bench.rss_cli",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--variant", choices=variants())
    p.add_argument("--rows", type=int, action="append", help="repeatable (default 1000)")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    a, extra = p.parse_known_args(argv)
    for n in a.rows or [1000]:
        r = measure(a.model, a.variant, n, extra)
        print(json.dumps(asdict(r)) if a.json else
              f"{r.variant}: {r.rows} rows, peak RSS {r.peak_rss_mb:.0f} MB, {r.seconds:.1f} s",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
