"""Late chunking: chunk vectors pooled from one pass of the whole document.

A variant built with the ``token_states`` output (``onnx_models/token_states.py``) returns
every token's contextual state through the Dense head. A document is tokenised once as
the model sees it (``prompt + text``), run through the transformer in windows of up to
2,048 tokens (``windows.py``: each token's state from the window where it has the most
context), and each chunk's vector is

    normalise((frame + sum of its tokens' states) / (F + k))

where ``k`` is the number of the chunk's own tokens (pieces that begin inside
``[start, end)``), ``F`` the frame tokens every window carries (BOS, the prompt's
pieces, EOS) and ``frame`` the sum of their states, averaged over the windows the
chunk's tokens come from (weighted by how many come from each). So the frame is pooled
as sentence-transformers pools the prompt, and a chunk that is the whole of a text that
fits one window gets exactly the text's sentence vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from embgemma_plugins.batching import plan_batches
from embgemma_plugins.errors import InvalidArgumentError
from embgemma_plugins.maths import check_finite, l2_normalise, truncate
from embgemma_plugins.session import TOKEN_STATES, run_batch
from embgemma_plugins.windows import assign, plan_windows, span_sums

if TYPE_CHECKING:
    from embgemma_plugins.model import EmbeddingGemma
    from embgemma_plugins.tokenizer import Tokenizer

WINDOW = 2048  # the model's max_position_embeddings
WINDOW_OVERLAP = 512  # each token keeps >= 256 tokens of context at a cut (a sliding layer's reach)


@dataclass
class Document:
    """One text prepared for late pooling: its frame, body tokens, windows and spans."""

    head: np.ndarray  # [BOS] + the prompt's pieces
    body: np.ndarray  # the text's pieces (as tokenised inside prompt + text)
    begins: np.ndarray  # character offset in the text where each body piece begins
    windows: list[tuple[int, int]]
    owner: np.ndarray  # the window each body token's state comes from
    spans: np.ndarray  # [k, 2] body-token ranges to pool
    sums: np.ndarray | None = None  # [k, 768] pooled token states so far
    frames: np.ndarray | None = None  # [k, 768] frame sums, times the tokens from each window
    first_frame: np.ndarray | None = None  # the first window's frame sum (for empty spans)
    counts: np.ndarray | None = None  # [k] tokens pooled so far

    @property
    def frame_size(self) -> int:
        return len(self.head) + 1  # + EOS

    def window_ids(self, w: int, eos: int) -> np.ndarray:
        start, end = self.windows[w]
        return np.concatenate([self.head, self.body[start:end], [eos]]).astype(np.int64)


def prepare(
    tokenizer: Tokenizer,
    text: str,
    prompt: str,
    spans: Sequence[tuple[int, int]],
    window: int = WINDOW,
    overlap: int = WINDOW_OVERLAP,
) -> Document:
    """Tokenise ``prompt + text`` once and map the character ``spans`` to body tokens."""
    ids, begins, ends = tokenizer.pieces(prompt + text)
    in_prompt = ends <= len(prompt)  # a piece reaching into the text (the prompt's last
    head = np.concatenate([[tokenizer.bos_id], ids[in_prompt]])  # space + a word) is text
    body, where = ids[~in_prompt], np.maximum(begins[~in_prompt] - len(prompt), 0)
    capacity = window - len(head) - 1
    if capacity < 1:
        raise InvalidArgumentError(
            f"the prompt {prompt!r} leaves no room in a {window}-token window"
        )
    windows = plan_windows(len(body), capacity, min(overlap, capacity // 2))
    chars = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    tokens = np.searchsorted(where, chars, side="left")
    return Document(head, body, where, windows, assign(windows, len(body)), tokens)


def absorb(doc: Document, w: int, states: np.ndarray) -> None:
    """Add window ``w``'s states (``[F + its body tokens, width]``) to the doc's spans."""
    start, end = doc.windows[w]
    body = states[len(doc.head) : len(doc.head) + end - start]
    frame = states[: len(doc.head)].sum(axis=0, dtype=np.float64) + states[-1]
    sums, counts = span_sums(body, doc.owner[start:end] == w, doc.spans - start)
    if doc.sums is None or doc.frames is None or doc.counts is None:
        doc.sums, doc.frames = np.zeros_like(sums), np.zeros_like(sums)
        doc.counts = np.zeros(len(sums), dtype=np.int64)
    doc.sums += sums
    doc.counts += counts
    doc.frames += counts[:, None] * frame[None, :]
    if w == 0:
        doc.first_frame = frame


def vectors(doc: Document) -> np.ndarray:
    """The spans' normalised 768-d vectors (after every window was absorbed)."""
    if doc.sums is None or doc.frames is None or doc.counts is None or doc.first_frame is None:
        raise ValueError("vectors() before every window of the document was absorbed")
    counts = doc.counts[:, None]
    frames = np.where(counts > 0, doc.frames / np.maximum(counts, 1), doc.first_frame[None, :])
    out = (frames + doc.sums) / (doc.frame_size + counts)
    return l2_normalise(out).astype(np.float32)


def run_windows(model: EmbeddingGemma, docs: Sequence[Document]) -> None:
    """Every window of ``docs`` through the session in token-budget batches, absorbed."""
    jobs = [(d, w) for d in range(len(docs)) for w in range(len(docs[d].windows))]
    ids = [docs[d].window_ids(w, model.tokenizer.eos_id) for d, w in jobs]
    names = [o.name for o in model.session.get_outputs()]
    if TOKEN_STATES not in names:
        raise InvalidArgumentError(
            f"late chunking needs a variant with the '{TOKEN_STATES}' output; "
            f"{model.files.onnx} has {', '.join(names)}: it was built before the recipes "
            "listed it. Rebuild it: embgemma export --variant " + str(model.variant)
        )
    for batch in plan_batches([len(x) for x in ids], model.batch_tokens, bounds=model.bounds):
        input_ids, mask = model.tokenizer.pad([ids[i] for i in batch])
        states = run_batch(model.session, input_ids, mask, TOKEN_STATES)
        model.table_pages.release(model.session, input_ids.size)
        for row, i in enumerate(batch):
            d, w = jobs[i]
            length = len(ids[i])
            check_finite(states[row, :length].sum(axis=0, keepdims=True), np.array([d]))
            absorb(docs[d], w, np.asarray(states[row, :length], dtype=np.float32))


def late_vectors(
    model: EmbeddingGemma,
    texts: Sequence[str],
    prompts: Sequence[str],
    spans: Sequence[Sequence[tuple[int, int]]],
    window: int = WINDOW,
    overlap: int = WINDOW_OVERLAP,
) -> list[np.ndarray]:
    """Per text, one unit vector (``model.dimensions``) per character span: late chunking
    of ``texts[i]`` embedded with ``prompts[i]``. The span ``(0, len(text))`` is the
    whole document (its late document vector)."""
    docs = [
        prepare(model.tokenizer, t, p, s, window, overlap)
        for t, p, s in zip(texts, prompts, spans, strict=True)
    ]
    run_windows(model, docs)
    return [truncate(vectors(d), model.dimensions) for d in docs]
