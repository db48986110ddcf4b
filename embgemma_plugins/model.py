"""``EmbeddingGemma``: texts in, unit-norm float32 vectors out.

The work is split as fastembed splits it: :meth:`EmbeddingGemma.tokenize` (prompt +
SentencePiece), :meth:`EmbeddingGemma.embed_tokens` (length-sorted batches through
the ONNX session, order restored, Matryoshka truncation), and thin ``embed*``
methods that combine the two with the right prompt.  One instance may be shared by
threads: the session is thread-safe and nothing else changes after construction.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from embgemma_plugins.batching import path_bounds, plan_batches
from embgemma_plugins.chunking import Chunk, chunk_texts
from embgemma_plugins.errors import InvalidArgumentError
from embgemma_plugins.long import (
    CHUNK_TOKENS,
    Chunked,
    check_policy,
    embed_chunks,
    embed_long,
    warn_truncated,
)
from embgemma_plugins.maths import check_finite, truncate
from embgemma_plugins.pages import TablePages
from embgemma_plugins.prompts import (
    DOCUMENT_TASK,
    QUERY_TASK,
    PromptTable,
    choose_prompt,
    put_title,
)
from embgemma_plugins.session import create_session, run_batch
from embgemma_plugins.settings import ModelSettings, Providers
from embgemma_plugins.store.layout import DEFAULT_MODEL
from embgemma_plugins.store.resolve import ModelFiles, load_prompt_table, locate
from embgemma_plugins.tokenizer import MAX_LENGTH, Encoded, Tokenizer

__all__ = ["DEFAULT_MODEL", "MAX_LENGTH", "EmbeddingGemma", "check_texts"]
_DEFAULTS = ModelSettings()


def check_texts(texts: Sequence[str], what: str = "texts") -> list[str]:
    """A list of strings, or an error naming the first bad item's index."""
    if isinstance(texts, (str, bytes)):
        raise InvalidArgumentError(
            f"{what} must be a list of strings, not a single string; wrap it in a list"
        )
    items = list(texts)
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise InvalidArgumentError(f"{what}[{i}] is {type(t).__name__}, not str")
    return items


class EmbeddingGemma:
    """EmbeddingGemma on ONNX Runtime (the public contract: docs/architecture.md).

    Args:
        model: a hub id (``google/embeddinggemma-300m``) or a local folder: a store
            variant, an Optimum export, or the onnx-community layout.
        variant: ``fp32``, ``int8`` or ``int4`` (default: the store's default).
        dimensions: 768, 512, 256 or 128 (Matryoshka truncation + renormalisation).
        providers: ONNX Runtime provider names or aliases (``cpu``, ``cuda``);
            ``None`` picks the best available.
        threads: intra-op threads (default: ONNX Runtime's, one per physical core).
        max_length: tokens per text, BOS and EOS included; longer texts are cut.
        batch_tokens: padded tokens per batch; bounds memory per session run.
        build_missing: build a missing store variant when the export extra is present.
        variants_repo: a hub repository of prebuilt variants (``org/name``) tried before a
            build (default: ``$EMBGEMMA_VARIANTS_REPO``; ``""``: none); docs/publishing.md.
        revision: the commit, branch or tag of the repository of prebuilt variants
            (``model`` itself, or ``variants_repo``) to use.

    The arguments are those of :class:`~embgemma_plugins.settings.ModelSettings`, checked
    there; :meth:`from_settings` opens a model from such an object.
    """

    def __init__(
        self,
        model: str | Path = _DEFAULTS.model,
        variant: str | None = _DEFAULTS.variant,
        dimensions: int = _DEFAULTS.dimensions,
        providers: Providers = _DEFAULTS.providers,
        threads: int | None = _DEFAULTS.threads,
        *,
        max_length: int = _DEFAULTS.max_length,
        batch_tokens: int = _DEFAULTS.batch_tokens,
        build_missing: bool = _DEFAULTS.build_missing,
        variants_repo: str | None = _DEFAULTS.variants_repo,
        revision: str | None = _DEFAULTS.revision,
    ) -> None:
        s = ModelSettings(str(model), variant, dimensions, providers, threads, max_length,
                          batch_tokens, build_missing, variants_repo, revision)
        self.settings = s
        self.model, self.dimensions = s.model, s.dimensions
        self.max_length, self.batch_tokens = s.max_length, s.batch_tokens
        self.files: ModelFiles = locate(model, s.variant, s.build_missing, s.variants_repo,
                                        s.revision)
        manifest = self.files.manifest
        self.variant = manifest.variant if manifest else (s.variant or "fp32")
        self.revision = manifest.revision if manifest else None
        self.tokenizer = Tokenizer(self.files.tokenizer)
        self.session, self.table_pages = TablePages.open(  # the table's pages: bounds RSS
            lambda: create_session(self.files.onnx, s.provider_list(), s.threads), self.files.onnx
        )
        self._prompts: PromptTable | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: ModelSettings) -> EmbeddingGemma:
        """The model ``settings`` describe."""
        s = settings
        return cls(s.model, s.variant, s.dimensions, s.providers, s.threads,
                   max_length=s.max_length, batch_tokens=s.batch_tokens,
                   build_missing=s.build_missing, variants_repo=s.variants_repo,
                   revision=s.revision)

    def __repr__(self) -> str:
        return (
            f"EmbeddingGemma(model={self.model!r}, variant={self.variant!r}, "
            f"dimensions={self.dimensions}, providers={self.providers})"
        )

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    @functools.cached_property
    def bounds(self) -> tuple[int, ...]:
        """Padded lengths no batch straddles: where the graph's arithmetic changes path."""
        return path_bounds(self.session.get_modelmeta().custom_metadata_map)

    @property
    def prompts(self) -> PromptTable:
        """The checkpoint's prompt table (loaded on first use)."""
        with self._lock:
            if self._prompts is None:
                self._prompts = load_prompt_table(self.files)
            return self._prompts

    def prompt_for(self, task: str | None = None, prompt: str | None = None) -> str:
        """The prompt string for ``task`` or the explicit ``prompt`` (not both)."""
        return choose_prompt(lambda: self.prompts, task, prompt)

    def tokenize(self, texts: Sequence[str], prompts: str | Sequence[str] = "") -> Encoded:
        """Prepend the prompt(s) and tokenise; one prompt for all texts or one per text."""
        items = check_texts(texts)
        if isinstance(prompts, str):
            joined = [prompts + t for t in items] if prompts else items
        else:
            if len(prompts) != len(items):
                raise InvalidArgumentError(f"{len(prompts)} prompts for {len(items)} texts")
            joined = [p + t for p, t in zip(prompts, items, strict=True)]
        return self.tokenizer.encode(joined, self.max_length)

    def embed_tokens(
        self, encoded: Encoded | Sequence[np.ndarray], done: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Embed tokenised texts in length-sorted batches; rows keep the input order.
        ``done(n)`` is told after each batch how many texts it held (progress)."""
        ids = encoded.ids if isinstance(encoded, Encoded) else list(encoded)
        out = np.empty((len(ids), self.dimensions), dtype=np.float32)
        lengths = [len(x) for x in ids]
        for batch in plan_batches(lengths, self.batch_tokens, bounds=self.bounds):
            input_ids, mask = self.tokenizer.pad([ids[i] for i in batch])
            vectors = run_batch(self.session, input_ids, mask)
            self.table_pages.release(self.session, input_ids.size)
            check_finite(vectors, batch)
            out[batch] = truncate(vectors, self.dimensions)
            if done is not None:
                done(len(batch))
        return out

    def embed(
        self, texts: Sequence[str], task: str | None = None, prompt: str | None = None
    ) -> np.ndarray:
        """Embed ``texts`` with the prompt of ``task`` or an explicit ``prompt``.

        With neither, the checkpoint's default prompt is used (none for
        EmbeddingGemma), as sentence-transformers' ``encode`` does. A text longer than
        ``max_length`` is cut, with a :class:`~embgemma_plugins.errors.TruncationWarning`
        naming it (documents: see ``long=`` of :meth:`embed_documents`).
        """
        encoded = self.tokenize(texts, self.prompt_for(task, prompt))
        if encoded.truncated.any():
            over = [int(i) for i in np.flatnonzero(encoded.truncated)]
            warn_truncated(over, [int(encoded.lengths[i]) for i in over], self.max_length, 3)
        return self.embed_tokens(encoded)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed search queries (task ``query``: ``task: search result | query: ``)."""
        return self.embed(texts, task=QUERY_TASK)

    def embed_documents(
        self, texts: Sequence[str], titles: Sequence[str | None] | None = None, *,
        prompt: str | None = None, long: str = "truncate",
    ) -> np.ndarray:
        """Embed documents as ``title: {title or none} | text: {text}``; ``prompt``: a
        document prompt of your own (a title replaces its ``title: none``).

        ``long``: what happens to a document longer than ``max_length`` tokens:
        ``truncate`` (cut, and a :class:`~embgemma_plugins.errors.TruncationWarning`
        names it), ``error`` (refused, naming its index and token count), ``mean`` (the
        token-weighted mean of its chunks' vectors) or ``late`` (late chunking's
        document vector; needs a variant with the ``token_states`` output).
        """
        items = check_texts(texts)
        check_policy(long)
        return embed_long(self, items, self.document_prompts(items, titles, prompt), long)

    def document_prompts(
        self, texts: Sequence[str], titles: Sequence[str | None] | None,
        prompt: str | None = None,
    ) -> list[str]:
        """The document prompt of each text (``title: {title or none} | text: ``, or
        ``prompt`` with the text's title put in)."""
        prompt = self.prompt_for(None, prompt) if prompt is not None else None  # checked
        if titles is None:
            return [self.prompt_for(DOCUMENT_TASK) if prompt is None else prompt] * len(texts)
        if isinstance(titles, str) or len(titles) != len(texts):
            raise InvalidArgumentError("titles must be a list with one title (or None) per text")
        for i, t in enumerate(titles):
            if t is not None and not isinstance(t, str):
                raise InvalidArgumentError(f"titles[{i}] is {type(t).__name__}, not str or None")
        return [self.prompts.document_prompt(t) if prompt is None else put_title(prompt, t)
                for t in titles]

    def chunk(
        self, texts: Sequence[str], max_tokens: int = CHUNK_TOKENS, overlap: int | None = None,
        titles: Sequence[str | None] | None = None,
    ) -> list[list[Chunk]]:
        """Each text's chunks: ``start``/``end`` character offsets into it, each at most
        ``max_tokens`` tokens with the document prompt, BOS and EOS, about ``overlap``
        tokens (default 64, or half of ``max_tokens`` if less) shared by neighbours, cut at
        paragraphs, then sentences, lines, words."""
        items = check_texts(texts)
        return chunk_texts(self.tokenizer, items, self.document_prompts(items, titles),
                           max_tokens, overlap)

    def embed_chunks(
        self, texts: Sequence[str], max_tokens: int = CHUNK_TOKENS, overlap: int | None = None,
        titles: Sequence[str | None] | None = None, *, late: bool = False,
    ) -> list[Chunked]:
        """Each text's chunks (:meth:`chunk`) and their vectors: each chunk embedded on
        its own with the document prompt, or with ``late`` pooled from one pass over the
        whole text, so every chunk vector has seen its neighbours."""
        items = check_texts(texts)
        return embed_chunks(self, items, self.document_prompts(items, titles), max_tokens,
                            overlap, late)
