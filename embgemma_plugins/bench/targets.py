"""The issue's targets, checked against one run's figures (ratios from the same run).

Benchmarks are not tests: nothing here fails a build; the report says met, missed,
or not measured, with the figure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from embgemma_plugins.bench.harness import ONNX, Row
from embgemma_plugins.bench.rss_cli import CliRss


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    status: str  # "met", "missed", "not measured"


def find(rows: Sequence[Row], variant: str) -> list[Row]:
    """The project's rows for ``variant``, one per dimension measured, 768 first."""
    mine = [r for r in rows if r.m.runtime.kind == ONNX and r.m.runtime.variant == variant]
    return sorted(mine, key=lambda r: (r.m.runtime.dim != 768, -r.m.runtime.dim))


def _verdict(
    target: str, found: Sequence[Row], value: Callable[[Row], float | None],
    ok: Callable[[float], bool], fmt: str,
) -> Verdict:
    """Met only when every dimension measured meets it: each dimension is the same
    computation (a truncation apart), so two rows are two measurements of one figure on a
    host whose speed drifts; a target is not claimed on the better of them."""
    known = [(r.m.runtime.dim, v) for r in found if (v := value(r)) is not None]
    if not known:
        return Verdict(target, "-", "not measured")
    measured = " / ".join(fmt.format(v) for _, v in known)
    if len(known) > 1:
        measured += " at " + " / ".join(str(dim) for dim, _ in known) + " dims"
    return Verdict(target, measured, "met" if all(ok(v) for _, v in known) else "missed")


def speed(rows: Sequence[Row], variant: str, factor: float) -> Verdict:
    return _verdict(f"{variant} throughput >= {factor:g}x sentence-transformers",
                    find(rows, variant), lambda r: r.speedup, lambda x: x >= factor, "{:.2f}x")


def latency(rows: Sequence[Row], variant: str, ms: float) -> Verdict:
    return _verdict(f"{variant} single short query p50 <= {ms:g} ms", find(rows, variant),
                    lambda r: r.m.p50_ms, lambda p50: p50 <= ms, "{:.1f} ms")


def load(rows: Sequence[Row], variant: str, seconds: float) -> Verdict:
    return _verdict(f"{variant} load time <= {seconds:g} s", find(rows, variant),
                    lambda r: r.m.load_s, lambda s: s <= seconds, "{:.2f} s")


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
