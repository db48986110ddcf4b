"""Where each long-document method wins: the figures of ``benchmarks.long_documents``
sliced by where the query's sentence sat in its page (in the first 2,048 tokens or past
them) and by the page's length, from the vectors it saved (``--vectors``)::

    python -m benchmarks.long_documents --variant fp32 --vectors fp32.npz
    python -m benchmarks.long_slices fp32.npz

Light: numpy and the tokenizer only (the token position of each query's place).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.long_documents import at_dims, load, ndcg_each
from embgemma_plugins.store import hub
from embgemma_plugins.store.layout import DEFAULT_MODEL
from embgemma_plugins.tokenizer import Tokenizer

PROMPT = "title: none | text: "
PAGES = ((0, 4000, "pages of 2k-4k tokens"), (4000, 8000, "pages of 4k-8k"),
         (8000, 10**9, "pages over 8k"))


def slices(docs: list[dict[str, Any]], queries: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Boolean masks over the queries, by where their sentence sat and by page length."""
    found = hub.cached(DEFAULT_MODEL, "tokenizer.model")
    if found is None:
        raise SystemExit(f"{DEFAULT_MODEL}'s tokenizer.model is not in the Hugging Face cache")
    tok = Tokenizer(found)
    pages = {d["id"]: d for d in docs}
    place = np.array([tok.encode([PROMPT + pages[q["relevant"]]["text"][: q["at"]]],
                                 10**7).lengths[0] for q in queries])
    size = np.array([pages[q["relevant"]]["tokens"] for q in queries])
    out = {"all": np.ones(len(queries), dtype=bool), "in the first 2,048 tokens": place <= 2048,
           "past the first 2,048 tokens": place > 2048}
    for low, high, name in PAGES:
        out[name] = (size > low) & (size <= high)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("vectors", type=Path, help="the .npz benchmarks.long_documents saved")
    p.add_argument("--dims", type=int, default=768)
    args = p.parse_args(argv)
    docs, queries = load()
    saved = np.load(args.vectors)
    q = at_dims(saved["queries"], args.dims)
    relevant_doc = [{int(i)} for i in saved["relevant"]]
    owner, spans = saved["chunk_owner"], saved["chunk_spans"]
    relevant_chunk = [{j for j, (i, s, e) in enumerate(spans) if i == r and s <= a <= e}
                      for r, a in zip(saved["relevant"], saved["at"], strict=True)]
    each = {}
    for key in saved.files:
        level, _, name = key.partition(" ")
        if level in ("document", "chunk"):
            rel = relevant_doc if level == "document" else relevant_chunk
            sims = q @ at_dims(saved[key], args.dims).T
            each[f"{level}: {name}"] = ndcg_each(sims, rel)
            if level == "chunk":  # a page scored by its best chunk
                best = np.stack([sims[:, owner == i].max(axis=1) for i in range(len(docs))], 1)
                each[f"document: best {name} chunk"] = ndcg_each(best, relevant_doc)
    masks = slices(docs, queries)
    names = list(masks)
    print(f"nDCG@10 at {args.dims} d by slice (queries: "
          + ", ".join(f"{n} {int(m.sum())}" for n, m in masks.items()) + ")\n")
    print("| method | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for method, values in each.items():
        print(f"| {method} | " + " | ".join(f"{values[masks[n]].mean():.4f}" for n in names)
              + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
