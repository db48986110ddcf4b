"""A LangChain ``TextSplitter`` that cuts with EmbeddingGemma's own tokenizer and prompt.

``chunk_size`` and ``chunk_overlap`` are tokens, counted as the model sees each chunk:
BOS, the document prompt (``title: {title or none} | text: ``, with the title from
``metadata[title_key]`` when there is one) and EOS included, so a 512-token chunk is at
most 512 real tokens. Chunks end at paragraphs, then sentences, lines, words; they cover
the text with no gap; ``start_index`` and ``end_index`` in a chunk's metadata are exact
character offsets into the source text (LangChain's own ``add_start_index`` searches for
the chunk text, which fails on repeated text).

    from embgemma_plugins import EmbeddingGemmaEmbeddings, EmbeddingGemmaTextSplitter

    embeddings = EmbeddingGemmaEmbeddings(variant="int8", title_key="title")
    splitter = EmbeddingGemmaTextSplitter.from_embeddings(embeddings, chunk_size=512)
    chunks = splitter.split_documents(docs)       # then embeddings.embed_titled_documents
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from embgemma_plugins.errors import InvalidArgumentError, missing_extra

try:
    from langchain_core.documents import Document
    from langchain_text_splitters import TextSplitter
except ImportError as e:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra(
        e, "EmbeddingGemmaTextSplitter needs LangChain's text splitters", "langchain"
    ) from e

from embgemma_plugins.chunking import check_sizes
from embgemma_plugins.long import CHUNK_TOKENS
from embgemma_plugins.splitting import DocumentChunker
from embgemma_plugins.store.layout import DEFAULT_MODEL

__all__ = ["EmbeddingGemmaTextSplitter"]


class EmbeddingGemmaTextSplitter(TextSplitter):
    """Token-exact chunks for EmbeddingGemma (see the module docstring).

    Args:
        chunk_size: tokens per chunk, prompt, BOS and EOS included.
        chunk_overlap: about this many tokens are shared by neighbouring chunks (default
            64, or half of ``chunk_size`` when less).
        model, variant: the model whose tokenizer and prompt table cut the text (only
            those two files are read; no ONNX session is opened).
        title_key: metadata key of a document's title (its chunks get its prompt).
    """

    def __init__(
        self,
        chunk_size: int = CHUNK_TOKENS,
        chunk_overlap: int | None = None,
        *,
        model: str = DEFAULT_MODEL,
        variant: str | None = None,
        title_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        chunk_overlap = check_sizes(chunk_size, chunk_overlap)
        if kwargs.pop("length_function", None) is not None:
            raise InvalidArgumentError("length_function is the model's tokenizer here")
        self._chunker = DocumentChunker(model, variant)
        self.title_key = title_key
        super().__init__(chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                         length_function=self._chunker.count, strip_whitespace=False, **kwargs)

    @classmethod
    def from_embeddings(cls, embeddings: Any, **kwargs: Any) -> EmbeddingGemmaTextSplitter:
        """A splitter for the model (and ``title_key``) of ``EmbeddingGemmaEmbeddings``."""
        kwargs.setdefault("title_key", embeddings.title_key)
        return cls(model=embeddings.model, variant=embeddings.variant, **kwargs)

    def split_text(self, text: str) -> list[str]:
        """The chunks' texts (untitled documents' prompt: ``title: none | text: ``)."""
        return [c.text for c in self._chunks(text, None)]

    def _chunks(self, text: str, title: str | None) -> list[Any]:
        prompt = self._chunker.prompt(title)
        return self._chunker.chunk(text, prompt, self._chunk_size, self._chunk_overlap)

    def create_documents(
        self, texts: list[str], metadatas: list[dict[Any, Any]] | None = None
    ) -> list[Document]:
        """One ``Document`` per chunk, with the source's metadata plus ``chunk`` (index),
        ``start_index`` and ``end_index`` (character offsets into the source text)."""
        metadatas = metadatas or [{}] * len(texts)
        out = []
        for text, metadata in zip(texts, metadatas, strict=True):
            title = metadata.get(self.title_key) if self.title_key else None
            for c in self._chunks(text, None if title is None else str(title)):
                meta = copy.deepcopy(metadata)
                meta.update(chunk=c.index, start_index=c.start, end_index=c.end)
                out.append(Document(page_content=c.text, metadata=meta))
        return out

    def split_documents(self, documents: Iterable[Document]) -> list[Document]:
        docs = list(documents)
        return self.create_documents([d.page_content for d in docs], [d.metadata for d in docs])
