"""The benchmark's real texts (embgemma_plugins/bench/data, described in docs/data.md)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
DOCUMENTS = DATA / "documents.jsonl.gz"
QUERIES = DATA / "queries.jsonl"


def _texts(lines: list[str]) -> list[str]:
    return [json.loads(line)["text"] for line in lines if line.strip()]


def spread(items: list[str], n: int | None) -> list[str]:
    """``n`` items taken evenly across ``items`` (all when ``n`` is None or too large).

    Evenly, not the first ``n``: the files are grouped by source and language, so a
    prefix would be all-English Debian descriptions and miss the long man pages.
    """
    if n is None or n >= len(items):
        return list(items)
    if n <= 0:
        return []
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def documents(n: int | None = None) -> list[str]:
    """Mixed-length real documents (660: 50 to 832 tokens, median 98)."""
    with gzip.open(DOCUMENTS, "rt", encoding="utf-8") as f:
        return spread(_texts(f.read().splitlines()), n)


def queries(n: int | None = None) -> list[str]:
    """Short real queries (126: 4 to 23 tokens)."""
    return spread(_texts(QUERIES.read_text(encoding="utf-8").splitlines()), n)
