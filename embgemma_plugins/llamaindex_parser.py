"""A LlamaIndex ``NodeParser`` that cuts with EmbeddingGemma's own tokenizer and prompt.

``chunk_size`` and ``chunk_overlap`` are tokens, counted as
:class:`~embgemma_plugins.EmbeddingGemmaEmbedding` will embed each node: BOS, the document
prompt (with the title from ``metadata[title_key]``), the node's metadata header when
metadata is embedded, the chunk, EOS. Chunks end at paragraphs, then sentences, lines,
words, cover the text with no gap, and carry exact ``start_char_idx``/``end_char_idx``.

    from embgemma_plugins import EmbeddingGemmaEmbedding, EmbeddingGemmaNodeParser

    embed_model = EmbeddingGemmaEmbedding(variant="int8", title_key="title")
    pipeline = IngestionPipeline(transformations=[
        EmbeddingGemmaNodeParser.from_embedding(embed_model, chunk_size=512), embed_model])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from embgemma_plugins.errors import missing_extra

try:
    from llama_index.core.node_parser.interface import NodeParser
    from llama_index.core.node_parser.node_utils import build_nodes_from_splits
    from llama_index.core.schema import BaseNode, Document, MetadataMode, TextNode
    from llama_index.core.utils import get_tqdm_iterable
    from pydantic import Field, PrivateAttr, model_validator
except ImportError as e:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra(e, "EmbeddingGemmaNodeParser needs LlamaIndex", "llamaindex") from e

from embgemma_plugins.chunking import check_sizes
from embgemma_plugins.long import CHUNK_TOKENS
from embgemma_plugins.splitting import DocumentChunker
from embgemma_plugins.store.layout import DEFAULT_MODEL

__all__ = ["EmbeddingGemmaNodeParser"]


class EmbeddingGemmaNodeParser(NodeParser):
    """Token-exact nodes for EmbeddingGemma (see the module docstring)."""

    chunk_size: int = Field(default=CHUNK_TOKENS, description="Tokens per chunk, prompt included.")
    chunk_overlap: int | None = Field(
        default=None, description="Tokens shared by neighbours (default 64, or half of "
        "chunk_size when less).")
    model: str = Field(default=DEFAULT_MODEL, description="Hub id or folder of the model.")
    variant: str | None = Field(default=None, description="Variant (default: the store's).")
    title_key: str | None = Field(default=None, description="Metadata key of the title.")

    _chunker: DocumentChunker = PrivateAttr()

    @model_validator(mode="after")
    def _check(self) -> EmbeddingGemmaNodeParser:
        self.chunk_overlap = check_sizes(self.chunk_size, self.chunk_overlap)
        self._chunker = DocumentChunker(self.model, self.variant)
        return self

    @classmethod
    def class_name(cls) -> str:
        return "EmbeddingGemmaNodeParser"

    @classmethod
    def from_embedding(cls, embed_model: Any, **kwargs: Any) -> EmbeddingGemmaNodeParser:
        """A parser for the model (and ``title_key``) of ``EmbeddingGemmaEmbedding``."""
        kwargs.setdefault("title_key", embed_model.title_key)
        return cls(model=embed_model.model, variant=embed_model.variant, **kwargs)

    def _prompt(self, node: BaseNode) -> str:
        """The prompt and metadata header the node's chunks will be embedded after."""
        title = node.metadata.get(self.title_key) if self.title_key else None
        prompt = self._chunker.prompt(None if title is None else str(title))
        if not self.include_metadata:
            return prompt
        excluded = [*node.excluded_embed_metadata_keys, *([self.title_key] if title else [])]
        templates = {"text_template": node.text_template} if isinstance(node, TextNode) else {}
        probe = TextNode(text="", metadata=node.metadata, excluded_embed_metadata_keys=excluded,
                         metadata_template=node.metadata_template,
                         metadata_seperator=node.metadata_separator, **templates)  # fmt: skip
        header = probe.get_content(metadata_mode=MetadataMode.EMBED)
        return prompt + header + "\n\n" if header else prompt

    def _parse_nodes(
        self, nodes: Sequence[BaseNode], show_progress: bool = False, **kwargs: Any
    ) -> list[BaseNode]:
        out: list[BaseNode] = []
        for node in get_tqdm_iterable(nodes, show_progress, "Chunking nodes"):
            text = node.get_content(metadata_mode=MetadataMode.NONE)
            chunks = self._chunker.chunk(text, self._prompt(node), self.chunk_size,
                                         self.chunk_overlap)  # fmt: skip
            made = build_nodes_from_splits([c.text for c in chunks], node, id_func=self.id_func)
            for child, c in zip(made, chunks, strict=True):
                child.start_char_idx, child.end_char_idx = c.start, c.end
            out.extend(made)
        return out

    def _postprocess_parsed_nodes(
        self, nodes: list[BaseNode], parent_doc_map: dict[str, Document]
    ) -> list[BaseNode]:
        """LlamaIndex's step (metadata, prev/next links), keeping the exact offsets: its own
        search for each chunk's text would put a repeated passage at its first place."""
        spans = {n.node_id: (n.start_char_idx, n.end_char_idx) for n in nodes
                 if isinstance(n, TextNode)}  # fmt: skip
        done = super()._postprocess_parsed_nodes(nodes, parent_doc_map)
        for n in done:
            if isinstance(n, TextNode) and n.node_id in spans:
                n.start_char_idx, n.end_char_idx = spans[n.node_id]
        return done
