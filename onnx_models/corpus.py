"""The real-text corpora shipped for building and measuring variants.

``data/fidelity.jsonl.gz`` (queries, long documents, eight languages, code) measures a
variant; ``data/calibration.jsonl.gz`` calibrates one. They never overlap, so a recipe
cannot be tuned to its own test.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embgemma_plugins.errors import InvalidArgumentError
from embgemma_plugins.prompts import DOCUMENT_TASK, QUERY_TASK

CORPUS = Path(__file__).with_name("data") / "fidelity.jsonl.gz"
CALIBRATION = CORPUS.with_name("calibration.jsonl.gz")


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
