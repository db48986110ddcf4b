"""Document throughput of two model folders, interleaved in one process.

A graph change is measured against the graph before it on the same host in the same
minutes: the two sessions take turns by slices of the documents (each slice embedded in
one call, with the runtime's own batching), so a host that slows down midway slows both.
Prints each side's total time, the ratio B / A, and the lowest cosine between the two
sides' vectors (a speed change should not move them)::

    python -m benchmarks.ab_throughput FOLDER_A FOLDER_B
    python -m benchmarks.ab_throughput A B --long 10   # 2,048-token documents

``--long N`` replaces the benchmark documents by N long ones, benchmark documents joined
and cut at the model's 2,048 tokens by the runtime: a batch of one each (``--chars 3000``
for documents of about 700 tokens, the length of a large RAG chunk). ``--unbounded A``
plans side A's batches as the runtime did before it kept texts from being padded across
a length bound (embgemma_plugins/batching.py), to measure what that costs.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Sequence

import numpy as np

from embgemma_plugins import EmbeddingGemma
from embgemma_plugins.bench import corpus
from embgemma_plugins.bench.harness import AB_PAUSE_S, ab_parser, cosine_stats
from embgemma_plugins.errors import TruncationWarning


def long_documents(n: int, chars: int = 12_000) -> list[str]:
    """`n` texts of about `chars` characters, real documents joined in turn."""
    docs, out = corpus.documents(), []
    i = 0
    for _ in range(n):
        text = ""
        while len(text) < chars:
            text += docs[i % len(docs)] + "\n\n"
            i += 1
        out.append(text)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = ab_parser("ab_throughput", __doc__, "the documents")
    p.add_argument("--slices", type=int, default=4, help="turns per pass")
    p.add_argument("--long", type=int, default=0, metavar="N", help="N long documents instead")
    p.add_argument("--chars", type=int, default=12_000, help="characters per --long document")
    p.add_argument("--unbounded", choices=("A", "B"), help="that side's plan ignores bounds")
    args = p.parse_args(argv)
    models = [EmbeddingGemma(path, build_missing=False) for path in (args.a, args.b)]
    warnings.simplefilter("ignore", TruncationWarning)  # --long documents are cut on purpose
    if args.unbounded:
        models["AB".index(args.unbounded)].bounds = ()
    docs = long_documents(args.long, args.chars) if args.long else corpus.documents()
    for m in models:  # warm up both sessions
        m.embed_documents(corpus.documents(8))
    step = -(-len(docs) // args.slices)
    slices = [docs[i : i + step] for i in range(0, len(docs), step)]
    seconds, vectors = [0.0, 0.0], [list[np.ndarray](), list[np.ndarray]()]
    for r in range(args.rounds):
        for part in slices:
            for side, m in enumerate(models):
                time.sleep(AB_PAUSE_S)
                start = time.perf_counter()
                got = m.embed_documents(part)
                seconds[side] += time.perf_counter() - start
                if r == 0:
                    vectors[side].append(got)
    _, lowest = cosine_stats(*(np.concatenate(v) for v in vectors))
    print(
        f"{len(docs)} documents x {args.rounds} rounds: A {seconds[0]:.1f} s, "
        f"B {seconds[1]:.1f} s, B/A {seconds[1] / seconds[0]:.3f}; "
        f"minimum cosine A to B {lowest:.6f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
