"""LlamaIndex ``BaseEmbedding`` for EmbeddingGemma on ONNX Runtime.

Query paths use the prompt of ``query_task`` (``task: search result | query: ``),
text paths the document prompt (``title: none | text: ``), batches go to the core
whole (it cuts length-sorted, token-budget batches itself), async methods run in a
worker thread, and the object pickles (``IngestionPipeline(num_workers=2)``).

    from embgemma_plugins import EmbeddingGemmaEmbedding

    embed_model = EmbeddingGemmaEmbedding(variant="int8", dimensions=256, title_key="title")

Titles: used as a transformation (``IngestionPipeline`` or ``transformations=``),
the model embeds each node as ``title: {metadata[title_key]} | text: {content}``,
through LlamaIndex's own batching (``embed_batch_size`` nodes per call, callbacks,
progress, the embeddings cache).

``model_name`` is LlamaIndex's name for the model: ``model_name="org/name"`` alone
sets ``model``; given both, they must agree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from embgemma_plugins.errors import missing_extra

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
    from llama_index.core.schema import BaseNode, MetadataMode
    from pydantic import Field, ValidationInfo, model_validator

    from embgemma_plugins.framework import EmbeddingGemmaSettings
except ImportError as e:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra(e, "EmbeddingGemmaEmbedding needs LlamaIndex", "llamaindex") from e

__all__ = ["EmbeddingGemmaEmbedding"]


class EmbeddingGemmaEmbedding(EmbeddingGemmaSettings, BaseEmbedding):
    """EmbeddingGemma as a LlamaIndex embedding model.

    Fields are those of :class:`~embgemma_plugins.config.EmbeddingGemmaSettings`
    plus LlamaIndex's own (``embed_batch_size``: texts per call to the model, which
    cuts token-budget batches itself; callbacks and progress advance per call).
    ``model_name`` is another name for ``model`` (set either; they always agree).
    Constructing one opens no model: the ONNX session is opened on first use and
    dropped on pickling.
    """

    embed_batch_size: int = Field(default=256, gt=0, le=2048)

    @model_validator(mode="before")
    @classmethod
    def _model_name_is_the_model(cls, data: Any, info: ValidationInfo) -> Any:
        if info.field_name is not None:  # an assignment: __setattr__ maps model_name
            return data
        if not isinstance(data, dict) or data.get("model_name") is None:
            return data
        name, model = data["model_name"], data.get("model")
        if model is None:
            return {**data, "model": name}
        if str(model) != str(name):
            raise ValueError(
                f"model_name={name!r} and model={model!r} differ: model_name is LlamaIndex's "
                "name for the model; give one of them"
            )
        return data

    @model_validator(mode="after")
    def _name(self) -> EmbeddingGemmaEmbedding:
        self.__dict__["model_name"] = self.model  # no validation round trip
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__("model" if name == "model_name" else name, value)

    @classmethod
    def class_name(cls) -> str:
        return "EmbeddingGemmaEmbedding"

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._embed_queries([query])[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._embed_documents([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        if not any(isinstance(t, _Titled) for t in texts):
            return self._embed_documents(texts)
        titles = [t.doc_title if isinstance(t, _Titled) else None for t in texts]
        return self._embed_documents([getattr(t, "content", t) for t in texts], titles)

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)

    def _titled(self, nodes: Sequence[BaseNode]) -> list[str]:
        """Each node's text (metadata mode EMBED, the title key left out) with its title."""
        key = self.title_key
        assert key is not None
        texts: list[str] = []
        for node in nodes:
            excluded = [*node.excluded_embed_metadata_keys, key]
            view = node.model_copy(update={"excluded_embed_metadata_keys": excluded})
            content = view.get_content(metadata_mode=MetadataMode.EMBED)
            value = node.metadata.get(key)
            title = None if value is None else str(value)
            texts.append(_Titled(content, title, self._document_prompt(title) + content))
        return texts

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        if self.title_key is None:
            return super().__call__(nodes, **kwargs)
        vectors = self.get_text_embedding_batch(self._titled(nodes), **kwargs)
        for node, vector in zip(nodes, vectors, strict=True):
            node.embedding = vector
        return nodes

    async def acall(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        if self.title_key is None:
            return await super().acall(nodes, **kwargs)
        texts = await asyncio.to_thread(self._titled, nodes)  # may open the model
        vectors = await self.aget_text_embedding_batch(texts, **kwargs)
        for node, vector in zip(nodes, vectors, strict=True):
            node.embedding = vector
        return nodes


class _Titled(str):
    """A node's text on its way through LlamaIndex's batching with its title: the string
    is the text as the model reads it (cache key, callback payload), ``content`` and
    ``doc_title`` are what is embedded."""

    content: str
    doc_title: str | None

    def __new__(cls, content: str, title: str | None, shown: str) -> _Titled:
        text = super().__new__(cls, shown)
        text.content, text.doc_title = content, title
        return text
