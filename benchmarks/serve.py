"""``embgemma serve`` under load, against the offline path and a one-at-a-time server.

Run from the repository root, alone on the machine (``flock /tmp/heavy.lock``)::

    python -m benchmarks.serve --variant int8 --plot docs/serve.png

In one run, each in its own process: the offline ``EmbeddingGemma.embed`` of the same
texts (the library's own batching), ``embgemma serve`` (cross-request batching), and a
one-request-at-a-time server (``benchmarks.serve_workers naive``).  Each server gets
1, 8, 32 and 128 concurrent clients (a bounded closed loop: each client sends a fixed
number of requests), first of single short queries (query prompt), then of 16-document
requests (document prompt), from ``embgemma_plugins/bench/data``.  Prints a Markdown table.  The
server runs with ``--truncate``, as offline ``embed`` and the one-at-a-time server cut
long inputs too (the real model's benchmark documents are all under 2,048 tokens).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.serve_load import LevelResult, Request, run_level
from embgemma_plugins.bench import corpus

QUERY_REQUESTS = {1: 200, 8: 400, 32: 640, 128: 1280}  # in total, per level
DOC_REQUESTS_PER_CLIENT = {1: 8, 8: 2, 32: 1, 128: 1}
DOCS_PER_REQUEST = 16
LISTENING = re.compile(r"listening on (http://\S+)")


def start(cmd: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        found = LISTENING.search(line)
        if found:
            url = found.group(1)
            break
    else:
        raise RuntimeError(f"{cmd} did not start")
    # keep reading its log (access lines), or the full pipe would stall the server
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url + "/health", timeout=5).status == 200:
                return proc, url
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{cmd} did not become healthy")


def stop(proc: subprocess.Popen[str]) -> float:
    """Peak RSS (VmHWM) in MB, then SIGTERM."""
    status = Path(f"/proc/{proc.pid}/status").read_text()
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    proc.terminate()
    proc.wait(120)
    return peak


def batch_stats(url: str) -> tuple[float, float]:
    text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    get = {k: float(v) for k, v in re.findall(r"^(embgemma_batch_size_(?:sum|count)) (\S+)$",
                                                 text, re.M)}
    return get.get("embgemma_batch_size_sum", 0.0), get.get("embgemma_batch_size_count", 0.0)


def workloads(queries: list[str], q_tokens: list[int], docs: list[str], d_tokens: list[int],
              model: str) -> dict[str, dict[int, list[list[Request]]]]:
    out: dict[str, dict[int, list[list[Request]]]] = {"queries": {}, "documents": {}}
    for level, total in QUERY_REQUESTS.items():
        per = math.ceil(total / level)
        out["queries"][level] = [[
            Request(json.dumps({"model": model, "input": queries[k % len(queries)],
                                "input_type": "query", "encoding_format": "float"}).encode(),
                    1, q_tokens[k % len(queries)])
            for k in (c * per + j for j in range(per))] for c in range(level)]
    for level, per in DOC_REQUESTS_PER_CLIENT.items():
        clients = []
        for c in range(level):
            work = []
            for j in range(per):
                first = ((c * per + j) * DOCS_PER_REQUEST) % len(docs)
                idx = [(first + i) % len(docs) for i in range(DOCS_PER_REQUEST)]
                body = {"model": model, "input": [docs[i] for i in idx],
                        "encoding_format": "float"}
                work.append(Request(json.dumps(body).encode(), DOCS_PER_REQUEST,
                                    sum(d_tokens[i] for i in idx)))
            clients.append(work)
        out["documents"][level] = clients
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(url: str, work: dict[str, dict[int, list[list[Request]]]], batching: bool,
            pid: int) -> dict[str, dict[int, dict[str, Any]]]:
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for kind, levels in work.items():
        out[kind] = {}
        for level, per_client in levels.items():
            before = batch_stats(url) if batching else (0.0, 0.0)
            cpu = cpu_seconds(pid)
            r: LevelResult = run_level(url, "/v1/embeddings", per_client)
            cpu = cpu_seconds(pid) - cpu
            after = batch_stats(url) if batching else (0.0, 0.0)
            lat = sorted(r.latencies_ms)
            rows = after[1] - before[1]
            out[kind][level] = {
                "requests": r.requests, "texts": r.texts, "errors": r.errors,
                "texts_s": r.texts / r.seconds, "tokens_s": r.tokens / r.seconds,
                "p50_ms": lat[len(lat) // 2], "p99_ms": lat[min(len(lat) - 1,
                                                             int(len(lat) * 0.99))],
                "mean_batch": (after[0] - before[0]) / rows if rows else None,
                "server_cpu": cpu / r.seconds,  # cores busy on average (2 = both)
                "statuses": r.statuses,
            }
            print(f"  {kind} x{level}: {out[kind][level]['texts_s']:.1f} texts/s, errors "
                  f"{r.errors}", file=sys.stderr, flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="google/embeddinggemma-300m")
    p.add_argument("--variant", default="int8")
    p.add_argument("--serve-option", action="append", default=[],
                   help="Extra option for embgemma serve (repeatable), e.g. --max-wait-ms=5")
    p.add_argument("--json", type=Path, help="Write all figures here.")
    p.add_argument("--plot", type=Path, help="Write the PNG plot here.")
    p.add_argument("--skip-naive", action="store_true")
    a = p.parse_args()
    queries, docs = corpus.queries(), corpus.documents()
    model_args = ["--model", a.model, "--variant", a.variant]
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps({"queries": [queries * 5, "query"],
                                    "documents": [docs, "document"]}))
        print("offline ...", file=sys.stderr, flush=True)
        done = subprocess.run([sys.executable, "-m", "benchmarks.serve_workers", "offline",
                               str(spec), *model_args], capture_output=True, text=True,
                              check=True)
    offline = json.loads(next(ln for ln in done.stdout.splitlines()
                              if ln.startswith("RESULT "))[7:])
    work = workloads(queries, offline["queries"]["token_counts"][:len(queries)], docs,
                     offline["documents"]["token_counts"], "embeddinggemma-300m")
    results: dict[str, Any] = {"offline": {k: v if not isinstance(v, dict) else {
        kk: vv for kk, vv in v.items() if kk != "token_counts"} for k, v in offline.items()}}
    print("embgemma serve ...", file=sys.stderr, flush=True)
    proc, url = start([sys.executable, "-m", "embgemma_plugins.cli.main", "serve",
                       *model_args, "--port", "0", "--truncate", *a.serve_option])
    results["serve"] = measure(url, work, batching=True, pid=proc.pid)
    results["serve_rss_mb"] = stop(proc)
    if not a.skip_naive:
        print("one-at-a-time server ...", file=sys.stderr, flush=True)
        proc, url = start([sys.executable, "-m", "benchmarks.serve_workers", "naive",
                           *model_args])
        results["naive"] = measure(url, work, batching=False, pid=proc.pid)
        results["naive_rss_mb"] = stop(proc)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    from benchmarks.serve_report import plot, table

    print(table(results))
    if a.plot:
        plot(results, a.plot)


if __name__ == "__main__":
    main()
