"""Long texts in a batch job: ``--long`` per row, and one output row per chunk.

Both engines embed a chunk of input rows through :func:`embgemma_plugins.jobs.job.embed_chunk`,
which calls here for the two things that are not "one text, one vector, cut at the window":

- :func:`embed_over` embeds the rows that do not fit ``--max-length`` by ``--long mean``
  or ``late`` (:mod:`embgemma_plugins.long`);
- :func:`embed_chunk_rows` cuts every row into token-exact chunks (``--chunk-tokens``,
  ``--chunk-overlap``) and embeds each chunk, on its own or, with ``--late``, pooled from
  one pass over the row's whole text.

Both are deterministic for a given chunk of rows (the same batches, the same floats), so a
resumed run writes the same bytes. :func:`truncation_notes` turns the rows ``--long
truncate`` cut into lines of the rejects file (marked ``embedded``: they are in OUT).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from embgemma_plugins.chunking import Chunk
from embgemma_plugins.jobs.records import Record, Reject
from embgemma_plugins.long import embed_chunks, embed_long

if TYPE_CHECKING:
    from embgemma_plugins.model import EmbeddingGemma

LONG_POLICIES = ("truncate", "error", "mean", "late")


@dataclass(frozen=True)
class ChunkRows:
    """``--chunk-tokens``: one output row per chunk of each text."""

    tokens: int
    overlap: int | None = None  # the chunker's default for ``tokens``
    late: bool = False
    keep_text: bool = False


def embed_over(
    model: EmbeddingGemma, texts: list[str], prompts: list[str], policy: str
) -> np.ndarray:
    """Vectors of texts that are all longer than the window, by ``mean`` or ``late``."""
    return embed_long(model, texts, prompts, policy)


def embed_chunk_rows(
    model: EmbeddingGemma, texts: list[str], prompts: list[str], rows: ChunkRows
) -> tuple[np.ndarray, list[tuple[int, Chunk]]]:
    """Every chunk's vector, and (text index, chunk) per output row, in text order."""
    items = embed_chunks(model, texts, prompts, rows.tokens, rows.overlap, rows.late)
    chunks = [(i, c) for i, item in enumerate(items) for c in item.chunks]
    vectors = [item.vectors for item in items]
    width = model.dimensions
    return (np.concatenate(vectors) if vectors else np.zeros((0, width), np.float32)), chunks


def truncation_notes(
    records: Sequence[Record], cut: Sequence[int], lengths: Sequence[int], max_length: int
) -> list[Reject]:
    """Rejects-file lines for the rows ``--long truncate`` cut (``cut``: their indices)."""
    return [
        Reject(records[i].row, records[i].line,
               f"truncated: {n:,} tokens with its prompt, over --max-length {max_length}; "
               f"embedded from its first {max_length} (--long mean or late embeds all of it)",
               None, embedded=True)
        for i, n in zip(cut, lengths, strict=True)
    ]  # fmt: skip


def chunk_stats(records: Sequence[Record], chunks: Sequence[tuple[int, Chunk]]) -> dict[str, Any]:
    return {"written": len(records), "outputs": len(chunks), "truncated": 0, "long": 0,
            "tokens": int(sum(c.tokens for _, c in chunks)), "truncated_ids": []}
