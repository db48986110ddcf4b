"""The issue's targets, checked against one run's figures (ratios from the same run).

Benchmarks are not tests: nothing here fails a build; the report says met, missed,
or not measured, with the figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from embgemma_plugins.benchmarks.harness import ONNX, Row
from embgemma_plugins.benchmarks.rss_cli import CliRss


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    status: str  # "met", "missed", "not measured"


def find(rows: Sequence[Row], variant: str) -> Row | None:
    """The project's row for ``variant``, preferring 768 dimensions."""
    mine = [r for r in rows if r.m.runtime.kind == ONNX and r.m.runtime.variant == variant]
    return next((r for r in mine if r.m.runtime.dim == 768), mine[0] if mine else None)


def _verdict(target: str, value: float | None, ok: bool | None, fmt: str) -> Verdict:
    if value is None or ok is None:
        return Verdict(target, "-", "not measured")
    return Verdict(target, fmt.format(value), "met" if ok else "missed")


def speed(rows: Sequence[Row], variant: str, factor: float) -> Verdict:
    r = find(rows, variant)
    x = r.speedup if r else None
    return _verdict(f"{variant} throughput >= {factor:g}x sentence-transformers", x,
                    None if x is None else x >= factor, "{:.2f}x")


def latency(rows: Sequence[Row], variant: str, ms: float) -> Verdict:
    r = find(rows, variant)
    p50 = r.m.p50_ms if r else None
    return _verdict(f"{variant} single short query p50 <= {ms:g} ms", p50,
                    None if p50 is None else p50 <= ms, "{:.1f} ms")


def load(rows: Sequence[Row], variant: str, seconds: float) -> Verdict:
    r = find(rows, variant)
    s = r.m.load_s if r else None
    return _verdict(f"{variant} load time <= {seconds:g} s", s,
                    None if s is None else s <= seconds, "{:.2f} s")


def memory(rss: Sequence[CliRss], variant: str, mb: float) -> Verdict:
    mine = [r for r in rss if r.variant == variant]
    top = max(mine, key=lambda r: r.rows) if mine else None
    target = f"{variant} peak RSS, embgemma embed, 100,000 documents <= {mb:g} MB"
    if top is None:
        return Verdict(target, "-", "not measured")
    peak = max(r.peak_rss_mb for r in mine)
    note = "" if top.rows >= 100_000 else f" (at {top.rows:,} rows)"
    return Verdict(target, f"{peak:.0f} MB{note}", "met" if peak <= mb else "missed")


def verdicts(rows: Sequence[Row], rss: Sequence[CliRss]) -> list[Verdict]:
    return [
        speed(rows, "int8", 8), speed(rows, "fp32", 3), speed(rows, "int4", 5),
        latency(rows, "int8", 10), memory(rss, "int8", 500), memory(rss, "int4", 350),
        load(rows, "int8", 2),
    ]
