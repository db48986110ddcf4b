"""Run the benchmark: every runtime in its own process, same texts, one report.

Full run (about 30 to 40 minutes on a quiet 2-core machine, most of it
sentence-transformers)::

    python -m embgemma_plugins.bench.run --out docs/benchmarks.md

Quick run (what ``embgemma bench`` does)::

    python -m embgemma_plugins.bench.run --quick
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from embgemma_plugins.bench import machine
from embgemma_plugins.bench.harness import ONNX, ST, Measurement, Row, Runtime, rows
from embgemma_plugins.bench.rss_cli import CliRss
from embgemma_plugins.bench.worker import RESULT
from embgemma_plugins.errors import EmbeddingGemmaError
from embgemma_plugins.store import registry
from embgemma_plugins.store.layout import DEFAULT_MODEL


@dataclass(frozen=True)
class Plan:
    """What to measure.  ``docs``/``queries`` None means every text in the corpus."""

    model: str = DEFAULT_MODEL
    st_model: str | None = None  # sentence-transformers checkpoint (default: ``model``)
    variants: tuple[str, ...] = registry.variants()
    dims: tuple[int, ...] = (768, 256)
    docs: int | None = None
    queries: int | None = None
    threads: int | None = None
    batch_tokens: int | None = None
    st_batch_size: int = 32
    rounds: int = 1
    include_st: bool = True
    rss_rows: tuple[int, ...] = (1000, 4000)  # CLI peak RSS runs for int8/int4; () for none
    rss_variants: tuple[str, ...] = ("int8", "int4")


#: The form ``embgemma bench`` runs: a few minutes, one dimension.
QUICK = Plan(dims=(768,), docs=96, queries=50, rss_rows=())


@dataclass
class Outcome:
    plan: Plan
    rows: list[Row]
    skipped: list[str] = field(default_factory=list)
    cpu: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    rss: list[CliRss] = field(default_factory=list)
    load: tuple[str, str] = ("-", "-")  # load average before and after
    seconds: float = 0.0


def st_available() -> bool:
    return importlib.util.find_spec("sentence_transformers") is not None


def variant_missing(model: str, variant: str) -> str | None:
    """Why ``variant`` cannot be measured (None when it is there); never builds one."""
    from embgemma_plugins.store.resolve import locate

    try:
        locate(model, variant, build_missing=False)
    except EmbeddingGemmaError as e:
        return str(e).splitlines()[0]
    return None


def runtimes(plan: Plan) -> tuple[list[Runtime], list[str]]:
    """The runtimes to measure, and one line per runtime skipped with its reason."""
    found: list[Runtime] = []
    skipped: list[str] = []
    if plan.include_st and not st_available():
        skipped.append("sentence-transformers: not installed (pip install "
                       "'embgemma-plugins[export]'); no ratios")
    for dim in plan.dims:
        if plan.include_st and st_available():
            found.append(Runtime(ST, plan.st_model or plan.model, "fp32", dim, plan.threads))
        for variant in plan.variants:
            why = variant_missing(plan.model, variant)
            if why is None:
                found.append(Runtime(ONNX, plan.model, variant, dim, plan.threads))
            elif dim == plan.dims[0]:
                skipped.append(f"{variant}: skipped, {why}")
    return found, skipped


def measure(rt: Runtime, plan: Plan, vectors: Path) -> Measurement:
    """One runtime in a fresh process; raises RuntimeError with the worker's last words."""
    spec = {"runtime": rt.__dict__, "docs": plan.docs, "queries": plan.queries,
            "batch_tokens": plan.batch_tokens, "st_batch_size": plan.st_batch_size,
            "vectors": str(vectors), "started": time.time()}
    cmd = [sys.executable, "-m", "embgemma_plugins.bench.worker", json.dumps(spec)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"{rt.label} failed (exit {done.returncode}):\n{tail}")
    return Measurement.from_json(json.loads(lines[-1][len(RESULT):]))


def best(a: Measurement | None, b: Measurement) -> Measurement:
    """Across rounds keep the faster run: noise on a shared machine only slows things."""
    return b if a is None or b.tokens_per_s > a.tokens_per_s else a


def run(plan: Plan, log: Callable[[str], None] = print) -> Outcome:
    start, load_before = time.perf_counter(), machine.load_average()
    todo, skipped = runtimes(plan)
    for line in skipped:
        log(line)
    kept: dict[Runtime, Measurement] = {}
    with tempfile.TemporaryDirectory(prefix="embgemma-bench-") as tmp:
        for r in range(plan.rounds):
            for i, rt in enumerate(todo):
                log(f"[round {r + 1}/{plan.rounds}] {rt.label} ...")
                try:
                    m = measure(rt, plan, Path(tmp) / f"{i}-{r}.npy")
                except RuntimeError as e:
                    log(str(e))
                    skipped.append(f"{rt.label}: failed, {str(e).splitlines()[-1]}")
                    continue
                log(f"  {m.tokens_per_s:.0f} tokens/s, p50 {m.p50_ms:.1f} ms, "
                    f"load {m.load_s:.2f} s, peak RSS {m.peak_rss_mb or 0:.0f} MB")
                kept[rt] = best(kept.get(rt), m)
        table = rows(list(kept.values()))  # cosines read the vectors before cleanup
    rss = cli_rss(plan, skipped, log)
    return Outcome(plan, table, skipped, machine.cpu_summary(), machine.versions(), rss,
                   (load_before, machine.load_average()), time.perf_counter() - start)


def cli_rss(plan: Plan, skipped: list[str], log: Callable[[str], None]) -> list[CliRss]:
    """Peak RSS of ``embgemma embed`` for the variants with a memory target."""
    from embgemma_plugins.bench import rss_cli

    found = []
    for variant in plan.rss_variants if plan.rss_rows else ():
        if variant not in plan.variants or variant_missing(plan.model, variant):
            continue
        for n in plan.rss_rows:
            log(f"embgemma embed, {variant}, {n} rows: peak RSS ...")
            try:
                found.append(rss_cli.measure(plan.model, variant, n))
            except RuntimeError as e:
                skipped.append(f"CLI RSS {variant} {n} rows: failed, {str(e).splitlines()[-1]}")
                continue
            log(f"  {found[-1].peak_rss_mb:.0f} MB in {found[-1].seconds:.0f} s")
    return found


def parse(argv: Sequence[str] | None) -> tuple[Plan, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="python -m embgemma_plugins.bench.run",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the short form (embgemma bench)")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--st-model", help="sentence-transformers checkpoint (default: --model)")
    p.add_argument("--variant", action="append", choices=registry.variants(), help="repeatable")
    p.add_argument("--dim", action="append", type=int, help="repeatable")
    p.add_argument("--docs", type=int)
    p.add_argument("--queries", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--batch-tokens", type=int)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--no-st", action="store_true", help="skip sentence-transformers")
    p.add_argument("--rss-rows", type=int, action="append",
                   help="rows for the CLI peak-RSS runs (repeatable; 0 for none)")
    p.add_argument("--out", type=Path, help="write Markdown here (and the plot as .png)")
    a = p.parse_args(argv)
    plan = QUICK if a.quick else Plan()
    plan = replace(plan, model=a.model, st_model=a.st_model, threads=a.threads,
                   batch_tokens=a.batch_tokens, rounds=a.rounds, include_st=not a.no_st,
                   variants=tuple(a.variant or plan.variants), dims=tuple(a.dim or plan.dims),
                   docs=a.docs if a.docs is not None else plan.docs,
                   queries=a.queries if a.queries is not None else plan.queries,
                   rss_rows=tuple(n for n in (a.rss_rows or plan.rss_rows) if n > 0))
    return plan, a


def main(argv: Sequence[str] | None = None) -> int:
    from embgemma_plugins.bench import report

    plan, args = parse(argv)
    outcome = run(plan, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(report.text_table(outcome))
    if args.out:
        report.write(outcome, args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0 if outcome.rows else 1


if __name__ == "__main__":
    sys.exit(main())
