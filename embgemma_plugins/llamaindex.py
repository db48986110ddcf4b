"""LlamaIndex ``BaseEmbedding`` for EmbeddingGemma on ONNX Runtime.

Query paths use the prompt of ``query_task`` (``task: search result | query: ``),
text paths the document prompt (``title: none | text: ``), batches go to the core
whole (it cuts length-sorted, token-budget batches itself), async methods run in a
worker thread, and the object pickles (``IngestionPipeline(num_workers=2)``).

    from embgemma_plugins import EmbeddingGemmaEmbedding

    embed_model = EmbeddingGemmaEmbedding(variant="int8", dimensions=256, title_key="title")

Titles: used as a transformation (``IngestionPipeline`` or ``transformations=``),
the model embeds each node as ``title: {metadata[title_key]} | text: {content}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
    from llama_index.core.schema import BaseNode, MetadataMode
    from pydantic import Field, model_validator

    from embgemma_plugins.framework import EmbeddingGemmaSettings
except ImportError as e:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        f"EmbeddingGemmaEmbedding needs LlamaIndex ({e.name} is missing): "
        "pip install 'embgemma-plugins[llamaindex]'"
    ) from e

__all__ = ["EmbeddingGemmaEmbedding"]


class EmbeddingGemmaEmbedding(EmbeddingGemmaSettings, BaseEmbedding):
    """EmbeddingGemma as a LlamaIndex embedding model.

    Fields are those of :class:`~embgemma_plugins.config.EmbeddingGemmaSettings`
    plus LlamaIndex's own (``embed_batch_size``: texts per call to the core, which
    batches by tokens itself).  ``model_name`` follows ``model``.  Constructing one
    opens no model: the ONNX session is opened on first use and dropped on pickling.
    """

    embed_batch_size: int = Field(default=256, gt=0, le=2048)

    @model_validator(mode="after")
    def _name(self) -> EmbeddingGemmaEmbedding:
        if self.model_name != self.model:
            self.model_name = self.model
        return self

    @classmethod
    def class_name(cls) -> str:
        return "EmbeddingGemmaEmbedding"

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._embed_queries([query])[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._embed_documents([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._embed_documents(texts)

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)

    def _titled(self, nodes: Sequence[BaseNode]) -> tuple[list[str], list[str | None]]:
        """Node texts (metadata mode EMBED, the title key left out) and their titles."""
        key = self.title_key
        assert key is not None
        texts, titles = [], []
        for node in nodes:
            excluded = [*node.excluded_embed_metadata_keys, key]
            view = node.model_copy(update={"excluded_embed_metadata_keys": excluded})
            texts.append(view.get_content(metadata_mode=MetadataMode.EMBED))
            title = node.metadata.get(key)
            titles.append(None if title is None else str(title))
        return texts, titles

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        if self.title_key is None:
            return super().__call__(nodes, **kwargs)
        texts, titles = self._titled(nodes)
        for node, vector in zip(nodes, self._embed_documents(texts, titles), strict=True):
            node.embedding = vector
        return nodes

    async def acall(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        if self.title_key is None:
            return await super().acall(nodes, **kwargs)
        return await asyncio.to_thread(self.__call__, nodes, **kwargs)
