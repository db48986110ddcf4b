"""Fidelity of a variant: how close its vectors are to the fp32 reference.

The reference is sentence-transformers on the source checkpoint (the model's own
implementation), on a corpus of real text shipped with the package
(``data/fidelity.jsonl.gz``: queries, long documents, eight languages, code).
Queries get the query prompt and everything else the document prompt, as in
retrieval.  Figures: mean and minimum cosine per text, and top-10 neighbour overlap
of a retrieval of the queries over the documents, at 768 dimensions and at each
smaller Matryoshka size (truncated and renormalised on both sides).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from embgemma_plugins.maths import DIMENSIONS, l2_normalise
from embgemma_plugins.store.manifest import MANIFEST_FILE
from embgemma_plugins.store.registry import Bar, info

from .corpus import CORPUS, load_corpus
from .reference import candidate_vectors, reference_vectors
from .steps import Steps

__all__ = ["CORPUS", "TOP_K", "measure", "measure_variant", "shortfalls", "top_k_overlap"]
TOP_K = 10


def _truncate(x: np.ndarray, dims: int) -> np.ndarray:
    return l2_normalise(x[:, :dims].astype(np.float64))


def top_k_overlap(reference: np.ndarray, candidate: np.ndarray, is_query: np.ndarray) -> float:
    """Mean share of each query's top-10 documents that both rankings agree on."""
    queries, docs = is_query, ~is_query
    k = min(TOP_K, int(docs.sum()))
    ref_top = np.argsort(-(reference[queries] @ reference[docs].T), axis=1)[:, :k]
    cand_top = np.argsort(-(candidate[queries] @ candidate[docs].T), axis=1)[:, :k]
    shared = [len(set(a) & set(b)) / k for a, b in zip(ref_top, cand_top, strict=True)]
    return float(np.mean(shared))


def measure(reference: np.ndarray, candidate: np.ndarray, is_query: np.ndarray) -> dict[str, Any]:
    """Fidelity figures of ``candidate`` against ``reference`` (rows aligned)."""
    figures: dict[str, Any] = {"texts": len(reference), "queries": int(is_query.sum())}
    for dims in DIMENSIONS:
        ref, cand = _truncate(reference, dims), _truncate(candidate, dims)
        cos = (ref * cand).sum(axis=1)
        figures[str(dims)] = {
            "mean_cosine": round(float(cos.mean()), 5),
            "min_cosine": round(float(cos.min()), 5),
            "top10_overlap": round(top_k_overlap(ref, cand, is_query), 4),
        }
    return figures


def shortfalls(figures: dict[str, Any], bar: Bar, size_bytes: int) -> list[str]:
    """Every way the figures miss ``bar`` (empty when the variant passes)."""
    full, missed = figures["768"], []
    for name in ("mean_cosine", "min_cosine", "top10_overlap"):
        if full[name] < getattr(bar, name):
            missed.append(f"{name} {full[name]} < {getattr(bar, name)}")
    for dims in DIMENSIONS[1:]:
        if figures[str(dims)]["top10_overlap"] < bar.top10_overlap:
            missed.append(
                f"top10_overlap at {dims} dims {figures[str(dims)]['top10_overlap']} "
                f"< {bar.top10_overlap}"
            )
    if size_bytes > bar.max_size_mb * 1e6:
        missed.append(f"size {size_bytes / 1e6:.3g} MB > {bar.max_size_mb:g} MB")
    return missed


def measure_variant(
    folder: Path,
    variant: str,
    checkpoint: Path,
    revision: str | None,
    cache_dir: Path,
    corpus_file: Path = CORPUS,
    steps: Steps | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """The manifest's ``fidelity`` record of the variant in ``folder``."""
    corpus = load_corpus(corpus_file)
    steps = steps or Steps(lambda _m: None)
    reference = reference_vectors(checkpoint, revision, corpus, cache_dir, corpus_file, steps,
                                  verbose)
    steps(f"measuring the {variant} variant against the fp32 reference")
    with steps.count(f"measuring {variant}", len(corpus.texts), "texts") as done:
        candidate = candidate_vectors(folder, corpus, done)
    figures = measure(reference, candidate, corpus.is_query)
    # Everything the variant installs, but not the manifest that records this figure.
    size = sum(
        p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_FILE
    )
    bar = info(variant).bar
    missed = shortfalls(figures, bar, size)
    return {
        "reference": "sentence-transformers on the source checkpoint, fp32",
        "corpus": {
            "file": corpus_file.name,
            "sha256_16": corpus.digest,
            "texts": len(corpus.texts),
            "queries": int(corpus.is_query.sum()),
        },
        "size_bytes": size,
        "figures": figures,
        "bar": asdict(bar),
        "passed": not missed,
        "shortfalls": missed,
    }
