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

import gzip
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embgemma_plugins.errors import InvalidArgumentError
from embgemma_plugins.maths import DIMENSIONS, l2_normalise
from embgemma_plugins.onnx_models.manifest import MANIFEST_FILE
from embgemma_plugins.prompts import DOCUMENT_TASK, QUERY_TASK

CORPUS = Path(__file__).with_name("data") / "fidelity.jsonl.gz"
CALIBRATION = CORPUS.with_name("calibration.jsonl.gz")
TOP_K = 10


@dataclass(frozen=True)
class Bar:
    """What a variant must reach against the fp32 reference (issue: quantised variants)."""

    mean_cosine: float
    min_cosine: float
    top10_overlap: float
    max_size_mb: float


BARS: dict[str, Bar] = {
    "fp32": Bar(0.9999, 0.999, 0.99, 1400),
    "int8": Bar(0.995, 0.98, 0.95, 320),
    "int4": Bar(0.985, 0.95, 0.90, 200),
}


@dataclass(frozen=True)
class Corpus:
    texts: list[str]
    is_query: np.ndarray
    digest: str

    def tasks(self) -> list[str]:
        return [QUERY_TASK if q else DOCUMENT_TASK for q in self.is_query]


def load_corpus(path: Path = CORPUS) -> Corpus:
    """Records with ``text`` and ``kind`` (``query`` or anything else) from JSONL(.gz)."""
    raw = path.read_bytes()
    lines = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    for number, r in enumerate(records, 1):
        if not isinstance(r.get("text"), str):
            raise InvalidArgumentError(f"{path}: record {number} has no string 'text' field")
    corpus = Corpus(
        [r["text"] for r in records],
        np.array([r.get("kind") == "query" for r in records], dtype=bool),
        hashlib.sha256(raw).hexdigest()[:16],
    )
    if not corpus.is_query.any() or corpus.is_query.all():
        raise InvalidArgumentError(f"{path}: needs both queries (kind: query) and documents")
    return corpus


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
) -> dict[str, Any]:
    """The manifest's ``fidelity`` record of the variant in ``folder``."""
    from embgemma_plugins.onnx_models.reference import candidate_vectors, reference_vectors

    corpus = load_corpus(corpus_file)
    reference = reference_vectors(checkpoint, revision, corpus, cache_dir)
    figures = measure(reference, candidate_vectors(folder, corpus), corpus.is_query)
    # Everything the variant installs, but not the manifest that records this figure.
    size = sum(
        p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_FILE
    )
    missed = shortfalls(figures, BARS[variant], size)
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
        "bar": asdict(BARS[variant]),
        "passed": not missed,
        "shortfalls": missed,
    }
