"""LangChain ``Embeddings`` for EmbeddingGemma on ONNX Runtime.

``embed_documents`` always uses the document prompt (``title: none | text: ``, or a
real title), ``embed_query`` the prompt of ``query_task`` (``task: search result |
query: ``): the two are never mixed up, which is the silent failure of RAG
pipelines that embed both sides alike.

    from embgemma_plugins import EmbeddingGemmaEmbeddings

    embeddings = EmbeddingGemmaEmbeddings(variant="int8", dimensions=256)
    embeddings = EmbeddingGemmaEmbeddings.from_config_file("rag.yaml", "embeddings")

Titles: vector stores pass only texts to ``embed_documents``, so titled documents
are embedded with :meth:`EmbeddingGemmaEmbeddings.embed_titled_documents` and
stored with the store's ``add_embeddings`` (see docs/rag.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

try:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings

    from embgemma_plugins.framework import EmbeddingGemmaSettings
except ImportError as e:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        f"EmbeddingGemmaEmbeddings needs LangChain ({e.name} is missing): "
        "pip install 'embgemma-plugins[langchain]'"
    ) from e

__all__ = ["EmbeddingGemmaEmbeddings"]


class EmbeddingGemmaEmbeddings(EmbeddingGemmaSettings, Embeddings):
    """EmbeddingGemma as a LangChain embedding model.

    Fields are those of :class:`~embgemma_plugins.config.EmbeddingGemmaSettings`
    (``model``, ``variant``, ``dimensions``, ``query_task``, ``title_key``,
    ``providers``, ``threads``, ``max_length``, ``batch_tokens``).  Constructing one
    opens no model: the ONNX session is opened on first use and dropped on pickling.
    """

    def embed_documents(
        self, texts: list[str], titles: Sequence[str | None] | None = None
    ) -> list[list[float]]:
        """Embed documents with the document prompt; ``titles``: one title (or None)
        per text, giving ``title: {title} | text: {text}``."""
        return self._embed_documents(texts, titles)

    def embed_query(self, text: str) -> list[float]:
        """Embed one query with the prompt of ``query_task``."""
        return self._embed_queries([text])[0]

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        """Embed many queries at once (length-sorted batches)."""
        return self._embed_queries(texts)

    def embed_titled_documents(
        self, documents: Sequence[Document], title_key: str | None = None
    ) -> list[list[float]]:
        """Embed LangChain ``Document`` s with the title in ``metadata[title_key]``
        (default: the ``title_key`` field, else ``"title"``); documents without one
        get ``title: none``."""
        key = title_key or self.title_key or "title"
        titles = [_title(d.metadata.get(key)) for d in documents]
        return self._embed_documents([d.page_content for d in documents], titles)

    async def aembed_documents(
        self, texts: list[str], titles: Sequence[str | None] | None = None
    ) -> list[list[float]]:
        """:meth:`embed_documents` in a worker thread (the event loop keeps running)."""
        return await asyncio.to_thread(self._embed_documents, texts, titles)

    async def aembed_query(self, text: str) -> list[float]:
        """:meth:`embed_query` in a worker thread (the event loop keeps running)."""
        return await asyncio.to_thread(self.embed_query, text)


def _title(value: object) -> str | None:
    return None if value is None else str(value)
