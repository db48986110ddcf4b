"""Pure pieces of the benchmark: what a runtime is, what is measured, how it is summarised.

No model is loaded here, so the orchestrator (``run``) stays small in memory and the
peak RSS each worker reports is its own runtime's, not the sum of all of them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

ONNX = "onnx"
ST = "st"
# A/B scripts (ab_latency, ab_throughput) pause at each switch of session: ONNX Runtime's
# worker threads spin for a while after a run, and on 2 cores they slow the other session.
AB_PAUSE_S = 0.05


@dataclass(frozen=True)
class Runtime:
    """One thing to measure: the project (``onnx``) on a variant, or sentence-transformers."""

    kind: str
    model: str
    variant: str
    dim: int
    threads: int | None = None

    @property
    def label(self) -> str:
        name = "embgemma" if self.kind == ONNX else "sentence-transformers"
        return f"{name} {self.variant} d{self.dim}"


@dataclass
class Measurement:
    """What one worker process measured (times in seconds, latencies in milliseconds)."""

    runtime: Runtime
    startup_s: float  # spawn to runtime library imported (interpreter + imports)
    load_s: float
    docs: int
    doc_tokens: int
    docs_s: float
    latencies_ms: list[float]
    peak_rss_mb: float | None
    threads: int | None = None
    vectors: str | None = None  # .npy file of the document vectors, for the cosine check
    notes: list[str] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.doc_tokens / self.docs_s if self.docs_s > 0 else float("nan")

    @property
    def texts_per_s(self) -> float:
        return self.docs / self.docs_s if self.docs_s > 0 else float("nan")

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measurement:
        data = dict(data)
        data["runtime"] = Runtime(**data["runtime"])
        return cls(**data)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (linear interpolation); NaN for no values."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Wall-clock seconds of one call, and its result."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def latencies_ms(fn: Callable[[str], object], items: Sequence[str], warmup: int = 3) -> list[float]:
    """One call per item, each timed alone: the latency a single user query sees.

    A few warm-up calls first, so one-off costs (allocator growth, lazy kernel
    selection) do not land in the p99.
    """
    for item in list(items)[:warmup]:
        fn(item)
    return [timed(lambda it=item: fn(it))[0] * 1000.0 for item in items]  # type: ignore[misc]


def peak_rss_mb() -> float | None:
    """This process's peak resident set size in MB (None where the OS does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes vs kB


def ab_parser(module: str, doc: str | None, passes: str) -> argparse.ArgumentParser:
    """The command line the A/B scripts share: two model folders and the passes over `passes`."""
    p = argparse.ArgumentParser(
        prog=f"python -m embgemma_plugins.bench.{module}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rounds", type=int, default=2, help=f"passes over {passes}")
    return p


def cosine_stats(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean and minimum row-wise cosine between two equally shaped matrices."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cos = (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))
    return float(cos.mean()), float(cos.min())


@dataclass(frozen=True)
class Row:
    """A measurement with its ratios to sentence-transformers in the same run."""

    m: Measurement
    speedup: float | None  # tokens/s over sentence-transformers' tokens/s
    latency_ratio: float | None  # sentence-transformers p50 over this p50
    memory_ratio: float | None  # this peak RSS over sentence-transformers'
    cosine: tuple[float, float] | None  # (mean, min) against sentence-transformers


def baseline_for(m: Measurement, measured: Sequence[Measurement]) -> Measurement | None:
    """The sentence-transformers measurement to compare ``m`` with: same dimensions if
    measured, else any sentence-transformers measurement of the run."""
    refs = [r for r in measured if r.runtime.kind == ST]
    same = [r for r in refs if r.runtime.dim == m.runtime.dim]
    pool = same or refs
    return pool[0] if pool else None


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or not den or np.isnan(num) or np.isnan(den):
        return None
    return num / den


def rows(measured: Sequence[Measurement]) -> list[Row]:
    """Every measurement with its ratios; cosine only where both saved vectors."""
    out = []
    for m in measured:
        ref = baseline_for(m, measured)
        cos = None
        if ref is not None and m.vectors and ref.vectors and ref.runtime.dim == m.runtime.dim:
            cos = cosine_stats(np.load(m.vectors), np.load(ref.vectors))
        out.append(Row(
            m,
            _ratio(m.tokens_per_s, ref.tokens_per_s if ref else None),
            _ratio(ref.p50_ms if ref else None, m.p50_ms),
            _ratio(m.peak_rss_mb, ref.peak_rss_mb if ref else None),
            cos,
        ))
    return out
