"""Long-document retrieval: nDCG@10 of the long= policies and of plain against late chunks.

On ``integration_tests/data/long_documents.jsonl.gz`` (40 whole man pages, 2,370 to 59,308
tokens; 158 queries, each a sentence taken out of its page: docs/data.md):

- document level (the relevant item is the page): ``truncate`` (the first 2,048 tokens),
  ``mean`` (token-weighted mean of the page's 512-token chunk vectors, as ``long="mean"``
  does; with ``--mean-windows`` also of 2,048-token chunks), ``late`` (late chunking's
  document vector: every token of the page pooled), and, for reference, a page scored by
  its best chunk (plain and late chunks);
- chunk level (the relevant items are the chunks whose span holds the place the query's
  sentence was taken from): every chunk of every page, embedded on its own (``plain``) or
  pooled from the page's one pass (``late``), 512-token chunks with 64 tokens of overlap.

Figures at 768 and 256 dimensions (the 256-d vectors are the 768-d ones truncated and
renormalised, as the runtime does). Heavy: run it under the lock, one variant at a time::

    flock /tmp/heavy.lock python -m benchmarks.long_documents --variant int8
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embgemma_plugins import EmbeddingGemma
from embgemma_plugins.late import late_vectors
from embgemma_plugins.long import Chunked, weighted_mean
from embgemma_plugins.maths import l2_normalise
from embgemma_plugins.store.layout import DEFAULT_MODEL

DATA = Path(__file__).resolve().parents[1] / "integration_tests/data/long_documents.jsonl.gz"
K = 10
DIMS = (768, 256)


def load(path: Path = DATA) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if r["kind"] == "document"], [r for r in rows if r["kind"] == "query"]


def ndcg(scores: np.ndarray, relevant: Sequence[set[int]], k: int = K) -> float:
    """Mean nDCG@k of binary relevance: ``scores`` is queries x items."""
    return float(np.mean(ndcg_each(scores, relevant, k)))


def ndcg_each(scores: np.ndarray, relevant: Sequence[set[int]], k: int = K) -> np.ndarray:
    """Each query's nDCG@k of binary relevance: ``scores`` is queries x items."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    discount = 1 / np.log2(np.arange(2, k + 2))
    values = []
    for row, rel in zip(top, relevant, strict=True):
        gains = np.array([i in rel for i in row], dtype=np.float64)
        ideal = discount[: min(len(rel), k)].sum()
        values.append(float((gains * discount).sum() / ideal) if ideal else 0.0)
    return np.array(values)


def at_dims(x: np.ndarray, dims: int) -> np.ndarray:
    return l2_normalise(x[:, :dims].astype(np.float64))


def timed(name: str, seconds: dict[str, float], work: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    out = work()
    seconds[name] = round(time.perf_counter() - start, 1)
    print(f"  {name}: {seconds[name]} s", flush=True)
    return out


def measure(
    model_name: str, variant: str | None, threads: int | None, mean_windows: bool = False,
    vectors: Path | None = None,
) -> dict[str, Any]:
    docs, queries = load()
    texts = [d["text"] for d in docs]
    index = {d["id"]: i for i, d in enumerate(docs)}
    model = EmbeddingGemma(model_name, variant, threads=threads, build_missing=False)
    seconds: dict[str, float] = {}
    warnings.simplefilter("ignore")  # truncation is the point of one of the rows
    q = timed("queries", seconds, lambda: model.embed_queries([x["text"] for x in queries]))
    doc_vectors = {"truncate": timed("truncate", seconds, lambda: model.embed_documents(texts))}
    plain: list[Chunked] = timed("plain 512 chunks", seconds,
                                 lambda: model.embed_chunks(texts, 512, 64))
    # One late pass per page gives both its late document vector (the span of the whole
    # page, as embed_documents(long="late") pools it) and its late 512-token chunks.
    prompts = model.document_prompts(texts, None)
    page_spans = [[(0, len(t)), *((ch.start, ch.end) for ch in c.chunks)]
                  for t, c in zip(texts, plain, strict=True)]
    pooled = timed("late (page + 512 chunks, one pass)", seconds,
                   lambda: late_vectors(model, texts, prompts, page_spans, window=model.max_length))
    doc_vectors["late"] = np.stack([v[0] for v in pooled])
    late = [Chunked(c.chunks, v[1:]) for c, v in zip(plain, pooled, strict=True)]
    doc_vectors["mean (512-token chunks)"] = np.stack([weighted_mean(c) for c in plain])
    if mean_windows:  # a third pass over every page: off unless asked
        windows: list[Chunked] = timed("mean 2048 chunks", seconds,
                                       lambda: model.embed_chunks(texts, 2048, 64))
        doc_vectors["mean (2,048-token chunks)"] = np.stack([weighted_mean(c) for c in windows])
    owner = np.concatenate([[i] * len(c.chunks) for i, c in enumerate(plain)])
    spans = [(i, ch.start, ch.end) for i, c in enumerate(plain) for ch in c.chunks]
    relevant_doc = [{index[x["relevant"]]} for x in queries]
    relevant_chunk = [
        {j for j, (i, s, e) in enumerate(spans) if i == index[x["relevant"]] and s <= x["at"] <= e}
        for x in queries
    ]
    chunk_vectors = {"plain": np.concatenate([c.vectors for c in plain]),
                     "late": np.concatenate([c.vectors for c in late])}
    figures: dict[str, Any] = {"document": {}, "chunk": {}}
    for dims in DIMS:
        qd = at_dims(q, dims)
        for name, v in doc_vectors.items():
            figures["document"].setdefault(name, {})[dims] = ndcg(qd @ at_dims(v, dims).T,
                                                                  relevant_doc)
        for name, v in chunk_vectors.items():
            sims = qd @ at_dims(v, dims).T
            figures["chunk"].setdefault(name, {})[dims] = ndcg(sims, relevant_chunk)
            best = np.full((len(queries), len(docs)), -np.inf)
            for i in range(len(docs)):
                best[:, i] = sims[:, owner == i].max(axis=1)
            label = f"best {name} chunk (512)"
            figures["document"].setdefault(label, {})[dims] = ndcg(best, relevant_doc)
    if vectors is not None:  # everything the figures come from, to slice them afterwards
        arrays: dict[str, Any] = {
            "queries": q, "chunk_owner": owner, "chunk_spans": np.array(spans),
            "relevant": np.array([index[x["relevant"]] for x in queries]),
            "at": np.array([x["at"] for x in queries]),
            **{f"document {k}": v for k, v in doc_vectors.items()},
            **{f"chunk {k}": v for k, v in chunk_vectors.items()}}
        np.savez(vectors, **arrays)
    return {
        "variant": model.variant, "documents": len(docs), "queries": len(queries),
        "chunks": len(spans), "relevant_chunks_per_query": float(
            np.mean([len(r) for r in relevant_chunk])),
        "tokens": int(sum(d["tokens"] for d in docs)), "seconds": seconds, "ndcg@10": figures,
    }


def table(result: dict[str, Any]) -> str:
    lines = [f"variant {result['variant']}: {result['documents']} pages, {result['queries']} "
             f"queries, {result['chunks']} chunks of 512 tokens "
             f"({result['relevant_chunks_per_query']:.2f} relevant per query)", "",
             "| level | method | nDCG@10, 768 d | nDCG@10, 256 d |", "|---|---|---|---|"]
    for level in ("document", "chunk"):
        for name, by_dim in result["ndcg@10"][level].items():
            lines.append(f"| {level} | {name} | {by_dim[768]:.4f} | {by_dim[256]:.4f} |")
    seconds = ", ".join(f"{k} {v} s" for k, v in result["seconds"].items())
    return "\n".join([*lines, "", f"time: {seconds}"])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL, help="hub id or a variant folder")
    p.add_argument("--variant", action="append", help="variant(s) to measure (repeatable)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--mean-windows", action="store_true",
                   help="also mean of 2,048-token chunks (one more pass over every page)")
    p.add_argument("--vectors", type=Path, help="save the vectors here (.npz; one variant)")
    args = p.parse_args(argv)
    results = []
    for variant in args.variant or ([None] if Path(args.model).is_dir() else ["fp32", "int8"]):
        print(f"{variant or args.model}:", flush=True)
        results.append(measure(args.model, variant, args.threads, args.mean_windows, args.vectors))
        print(table(results[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
