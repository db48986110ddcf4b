"""LangChain ``Embeddings`` for EmbeddingGemma on ONNX Runtime.

``embed_documents`` always uses the document prompt (``title: none | text: ``, or a
real title), ``embed_query`` the prompt of ``query_task`` (``task: search result |
query: ``): the two are never mixed up, which is the silent failure of RAG
pipelines that embed both sides alike.

    from embgemma_plugins import EmbeddingGemmaEmbeddings

    embeddings = EmbeddingGemmaEmbeddings(variant="int8", dimensions=256)
    embeddings = EmbeddingGemmaEmbeddings.from_config_file("rag.yaml", "embeddings")

Titles: vector stores pass only texts to ``embed_documents``; :meth:`add_documents`
and :meth:`build_store` put each ``Document``'s ``metadata[title_key]`` in its prompt
in one call, with any vector store (see docs/rag.md).
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from embgemma_plugins.errors import InvalidArgumentError, missing_extra

try:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import VectorStore
    from pydantic import Field, PrivateAttr

    from embgemma_plugins.framework import EmbeddingGemmaSettings
except ImportError as e:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra(e, "EmbeddingGemmaEmbeddings needs LangChain", "langchain") from e

from embgemma_plugins.titles import Registration, TitleQueue

__all__ = ["EmbeddingGemmaEmbeddings"]
#: Texts per call to the model when ``show_progress`` is on and ``batch_size`` is not set.
PROGRESS_BATCH = 256
Store = TypeVar("Store", bound=VectorStore)


class EmbeddingGemmaEmbeddings(EmbeddingGemmaSettings, Embeddings):
    """EmbeddingGemma as a LangChain embedding model.

    Fields are those of :class:`~embgemma_plugins.config.EmbeddingGemmaSettings`
    (``model``, ``variant``, ``dimensions``, ``query_task``, ``query_prompt``,
    ``document_prompt``, ``title_key``, ``providers``, ``threads``, ``max_length``,
    ``batch_tokens``) plus ``batch_size`` (texts per call to the model; ``None``: all
    at once, the model cuts token-budget batches itself) and ``show_progress`` (a tqdm
    bar on stderr for ``embed_documents`` / ``embed_queries``, advanced per call:
    every ``batch_size`` texts, or every 256 when ``batch_size`` is not set).  Constructing one
    opens no model: the ONNX session is opened on first use and dropped on pickling.
    """

    batch_size: int | None = Field(default=None, ge=1)
    show_progress: bool = False

    _titles: TitleQueue = PrivateAttr(default_factory=TitleQueue)

    def embed_documents(
        self, texts: list[str], titles: Sequence[str | None] | None = None
    ) -> list[list[float]]:
        """Embed documents with the document prompt; ``titles``: one title (or None)
        per text, giving ``title: {title} | text: {text}``."""
        if titles is None:
            titles = self._titles.take(texts)
        return self._in_batches(texts, titles, "documents")

    def embed_query(self, text: str) -> list[float]:
        """Embed one query with the prompt of ``query_task`` (or ``query_prompt``)."""
        return self._embed_queries([text])[0]

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        """Embed many queries at once (length-sorted batches)."""
        return self._in_batches(texts, None, "queries")

    def embed_titled_documents(
        self, documents: Sequence[Document], title_key: str | None = None
    ) -> list[list[float]]:
        """Embed LangChain ``Document`` s with the title in ``metadata[title_key]``
        (default: the ``title_key`` field, else ``"title"``); documents without one
        get ``title: none``."""
        titles = _titles_of(documents, title_key or self.title_key)
        return self._in_batches([d.page_content for d in documents], titles, "documents")

    async def aembed_documents(
        self, texts: list[str], titles: Sequence[str | None] | None = None
    ) -> list[list[float]]:
        """:meth:`embed_documents` in a worker thread (the event loop keeps running)."""
        return await asyncio.to_thread(self.embed_documents, texts, titles)

    async def aembed_query(self, text: str) -> list[float]:
        """:meth:`embed_query` in a worker thread (the event loop keeps running)."""
        return await asyncio.to_thread(self.embed_query, text)

    # -- batches and progress ------------------------------------------------------------

    def _in_batches(
        self, texts: Sequence[str], titles: Sequence[str | None] | None, kind: str
    ) -> list[list[float]]:
        """Embed ``texts`` in calls of ``batch_size`` texts, advancing the progress bar."""
        size = self.batch_size or (PROGRESS_BATCH if self.show_progress else len(texts))
        if size == 0 or (size >= len(texts) and not self.show_progress):
            return self._one_batch(texts, titles, kind)
        out: list[list[float]] = []
        with _progress(self.show_progress, len(texts), f"Embedding {kind}") as advance:
            for start in range(0, len(texts), size):
                part = titles[start : start + size] if titles is not None else None
                out += self._one_batch(texts[start : start + size], part, kind)
                advance(min(size, len(texts) - start))
        return out

    def _one_batch(
        self, texts: Sequence[str], titles: Sequence[str | None] | None, kind: str
    ) -> list[list[float]]:
        if kind == "queries":
            return self._embed_queries(texts)
        return self._embed_documents(texts, titles)

    # -- Documents with titles into vector stores -------------------------------------------

    @contextmanager
    def titles_for(
        self, documents: Sequence[Document], title_key: str | None = None
    ) -> Iterator[Registration]:
        """While the block runs, ``embed_documents`` gives each text of ``documents`` its
        document's title (``metadata[title_key]``; default: the ``title_key`` field, else
        ``"title"``), whoever calls it: a vector store's ``add_documents``,
        ``from_documents``, LangChain's ``index()``..."""
        used = Registration(len(documents))
        titles = _titles_of(documents, title_key or self.title_key)
        self._titles.add(used, [d.page_content for d in documents], titles)
        try:
            yield used
        finally:
            used.missed = self._titles.drop(used)

    def add_documents(
        self, store: VectorStore, documents: Sequence[Document], *,
        title_key: str | None = None, **kwargs: Any,
    ) -> list[str]:
        """``store.add_documents(documents)`` with each document's title in its prompt
        (see :meth:`titles_for`); returns the ids the store gives."""
        with self.titles_for(documents, title_key) as used:
            ids = store.add_documents(list(documents), **kwargs)
        _warn_missed(used, store)
        return ids

    def build_store(
        self, store_class: type[Store], documents: Sequence[Document], *,
        title_key: str | None = None, **kwargs: Any,
    ) -> Store:
        """``store_class.from_documents(documents, self, **kwargs)`` with each document's
        title in its prompt (see :meth:`titles_for`)."""
        with self.titles_for(documents, title_key) as used:
            store = store_class.from_documents(list(documents), self, **kwargs)
        _warn_missed(used, store)
        return store


def _titles_of(documents: Sequence[Document], key: str | None) -> list[str | None]:
    key = key or "title"
    return [None if (v := d.metadata.get(key)) is None else str(v) for d in documents]


def _warn_missed(used: Registration, store: object) -> None:
    if used.missed:
        warnings.warn(
            f"{used.missed} of {used.documents} documents did not reach embed_documents "
            f"with their page_content unchanged ({type(store).__name__} changed or skipped "
            "them): those were embedded without their titles, if at all",
            stacklevel=3,
        )


@contextmanager
def _progress(show: bool, total: int, what: str) -> Iterator[Callable[[int], None]]:
    """A tqdm bar on stderr advanced by the function yielded (a no-op when ``show`` is off)."""
    if not show:
        yield lambda n: None
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise InvalidArgumentError("show_progress=True needs tqdm: pip install tqdm") from None
    with tqdm(total=total, desc=what, unit="text") as bar:
        yield bar.update
