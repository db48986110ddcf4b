"""Texts longer than the model's window: the ``long=`` policies, and chunk vectors.

Wherever documents are embedded, ``long`` says what happens to a text that does not fit
``max_length`` tokens (its prompt, BOS and EOS included):

- ``truncate``: cut to the window, as sentence-transformers does, but never silently: a
  :class:`~embgemma_plugins.errors.TruncationWarning` names the indices (and lengths) of
  the texts that were cut;
- ``error``: :class:`~embgemma_plugins.errors.InvalidArgumentError` naming the first such
  text's index and its token count;
- ``mean``: the text's chunks (:mod:`.chunking`, ``chunk_tokens`` each) are embedded and
  their vectors averaged, each weighted by its token count, then renormalised;
- ``late``: late chunking's document vector (:mod:`.late`): the whole text through the
  transformer in windows, every token's state pooled, then normalised.

A text that fits is embedded as it is under every policy (for ``late`` that is the same
vector: the pooled states of one window are the sentence vector).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from embgemma_plugins.chunking import Chunk, check_sizes, chunk_texts
from embgemma_plugins.errors import InvalidArgumentError, TruncationWarning
from embgemma_plugins.late import late_vectors
from embgemma_plugins.maths import l2_normalise

if TYPE_CHECKING:
    from embgemma_plugins.model import EmbeddingGemma

POLICIES = ("truncate", "error", "mean", "late")
CHUNK_TOKENS = 512


@dataclass(frozen=True)
class Chunked:
    """One text's chunks and their vectors (row ``i`` of ``vectors`` is ``chunks[i]``)."""

    chunks: list[Chunk]
    vectors: np.ndarray


def check_policy(long: str) -> str:
    if long not in POLICIES:
        raise InvalidArgumentError(f"long must be one of {', '.join(POLICIES)}, got {long!r}")
    return long


def embed_long(
    model: EmbeddingGemma,
    texts: list[str],
    prompts: list[str],
    long: str = "truncate",
    chunk_tokens: int = CHUNK_TOKENS,
    overlap: int | None = None,
) -> np.ndarray:
    """Vectors of ``texts`` (embedded with ``prompts``) under the policy ``long``."""
    check_policy(long)
    encoded = model.tokenize(texts, prompts)
    over = [int(i) for i in np.flatnonzero(encoded.truncated)]
    lengths = [int(encoded.lengths[i]) for i in over]
    if over and long == "error":
        raise InvalidArgumentError(
            f"texts[{over[0]}] is {lengths[0]} tokens with its prompt, longer than max_length "
            f"{model.max_length}" + (f" ({len(over)} texts are)" if len(over) > 1 else "")
            + "; pass long='truncate', 'mean' or 'late'")
    if long == "truncate" or not over:
        if over:
            warn_truncated(over, lengths, model.max_length)
        return model.embed_tokens(encoded)
    fit = [i for i in range(len(texts)) if not encoded.truncated[i]]
    out = np.empty((len(texts), model.dimensions), dtype=np.float32)
    out[fit] = model.embed_tokens([encoded.ids[i] for i in fit])
    long_texts, long_prompts = [texts[i] for i in over], [prompts[i] for i in over]
    if long == "mean":
        size, shared = mean_chunking(model.max_length, chunk_tokens, overlap)
        items = embed_chunks(model, long_texts, long_prompts, size, shared)
        for i, item in zip(over, items, strict=True):
            out[i] = weighted_mean(item)
    else:
        spans = [[(0, len(t))] for t in long_texts]
        docs = late_vectors(model, long_texts, long_prompts, spans, window=model.max_length)
        out[over] = np.concatenate(docs)
    return out


def mean_chunking(max_length: int, chunk_tokens: int, overlap: int | None) -> tuple[int, int]:
    """The chunk size and overlap ``mean`` uses: at most the model's window, and an
    overlap of at most half a chunk (``None``: the chunker's default for that size)."""
    size = min(chunk_tokens, max_length)
    return size, check_sizes(size, None if overlap is None else min(overlap, size // 2))


def weighted_mean(item: Chunked) -> np.ndarray:
    """The chunks' vectors averaged by their token counts, then renormalised."""
    weights = np.array([c.tokens for c in item.chunks], dtype=np.float64)
    mean = (weights[:, None] * item.vectors.astype(np.float64)).sum(axis=0, keepdims=True)
    out: np.ndarray = l2_normalise(mean).astype(np.float32)[0]
    return out


def embed_chunks(
    model: EmbeddingGemma,
    texts: list[str],
    prompts: list[str],
    max_tokens: int = CHUNK_TOKENS,
    overlap: int | None = None,
    late: bool = False,
) -> list[Chunked]:
    """Each text's chunks and their vectors: every chunk embedded as a text of its own
    (its prompt included), or with ``late`` pooled from one pass over the whole text."""
    if max_tokens > model.max_length:
        raise InvalidArgumentError(
            f"max_tokens {max_tokens} is more than the model's max_length {model.max_length}")
    chunked = chunk_texts(model.tokenizer, texts, prompts, max_tokens, overlap)
    if late:
        spans = [[(c.start, c.end) for c in cs] for cs in chunked]
        vectors = late_vectors(model, texts, prompts, spans, window=model.max_length)
        return [Chunked(cs, v) for cs, v in zip(chunked, vectors, strict=True)]
    flat = [c.text for cs in chunked for c in cs]
    flat_prompts = [p for p, cs in zip(prompts, chunked, strict=True) for _ in cs]
    every = model.embed_tokens(model.tokenize(flat, flat_prompts))
    ends = np.cumsum([len(cs) for cs in chunked])
    return [Chunked(cs, v) for cs, v in zip(chunked, np.split(every, ends[:-1]), strict=True)]


def warn_truncated(
    indices: Sequence[int], lengths: Sequence[int], max_length: int, stacklevel: int = 4
) -> None:
    shown = ", ".join(f"{i} ({n} tokens)" for i, n in list(zip(indices, lengths, strict=True))[:10])
    more = f" and {len(indices) - 10} more" if len(indices) > 10 else ""
    warnings.warn(
        TruncationWarning(
            f"{len(indices)} text(s) longer than max_length {max_length} were truncated: "
            f"indices {shown}{more}; long='mean' or 'late' embeds all of a text, long='error' "
            "refuses it", list(indices), list(lengths)),
        stacklevel=stacklevel,
    )
