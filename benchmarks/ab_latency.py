"""Single-query latency of two model folders, interleaved in short blocks.

A full benchmark run compares runtimes in separate processes one after another, so a host
that slows down midway shifts the figures; interleaving two variants' queries in one process
gives their ratio even then (docs/benchmarks.md, the int8 p50 entry). The variants take
turns by blocks of queries with a pause at each switch: ONNX Runtime's worker threads spin
for a while after a run, and one session's spinning thread on a 2-core machine roughly
doubled the other's latency when the two alternated query by query (p50 24 ms against
12 ms alone), which hides the absolute figures::

    python -m benchmarks.ab_latency FOLDER_A FOLDER_B
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import numpy as np

from embgemma_plugins import EmbeddingGemma
from embgemma_plugins.bench import corpus
from embgemma_plugins.bench.harness import AB_PAUSE_S, ab_parser

BLOCK = 14  # queries per turn


def main(argv: Sequence[str] | None = None) -> int:
    p = ab_parser("ab_latency", __doc__, "the 126 queries")
    args = p.parse_args(argv)
    models = [EmbeddingGemma(path, build_missing=False) for path in (args.a, args.b)]
    queries = corpus.queries()
    for m in models:  # warm up both sessions
        for q in queries[:10]:
            m.embed_queries([q])
    times: list[list[float]] = [[], []]
    blocks = [queries[i : i + BLOCK] for i in range(0, len(queries), BLOCK)]
    for block in blocks * args.rounds:
        for m, t in zip(models, times, strict=True):
            time.sleep(AB_PAUSE_S)  # the other session's threads stop spinning
            for q in block:
                start = time.perf_counter()
                m.embed_queries([q])
                t.append(time.perf_counter() - start)
    a, b = (np.array(t) for t in times)
    print(
        f"A p50 {np.median(a) * 1e3:.2f} ms, B p50 {np.median(b) * 1e3:.2f} ms, "
        f"median B/A {np.median(b / a):.3f} over {len(a)} queries (pairs by position)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
