"""EmbeddingGemma on ONNX Runtime, with LangChain, LlamaIndex, CLI and Ray Data integrations.

``import embgemma_plugins`` loads almost nothing: the runtime (onnxruntime,
sentencepiece, numpy) when :class:`EmbeddingGemma` is first used, the framework
adapters when their classes are, and never torch or transformers.  Plugins other
programs load at start-up (``llm``'s, :mod:`embgemma_plugins.llm_plugin`) stay cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from embgemma_plugins.errors import (
    EmbeddingGemmaError,
    InvalidArgumentError,
    ModelNotFoundError,
    NonFiniteEmbeddingError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from embgemma_plugins.langchain import EmbeddingGemmaEmbeddings
    from embgemma_plugins.langchain_splitter import EmbeddingGemmaTextSplitter
    from embgemma_plugins.llamaindex import EmbeddingGemmaEmbedding
    from embgemma_plugins.llamaindex_parser import EmbeddingGemmaNodeParser
    from embgemma_plugins.model import EmbeddingGemma

_LAZY = {
    "EmbeddingGemma": "embgemma_plugins.model",
    "EmbeddingGemmaEmbeddings": "embgemma_plugins.langchain",
    "EmbeddingGemmaTextSplitter": "embgemma_plugins.langchain_splitter",
    "EmbeddingGemmaEmbedding": "embgemma_plugins.llamaindex",
    "EmbeddingGemmaNodeParser": "embgemma_plugins.llamaindex_parser",
}

__all__ = [
    "EmbeddingGemma",
    "EmbeddingGemmaEmbedding",
    "EmbeddingGemmaEmbeddings",
    "EmbeddingGemmaError",
    "EmbeddingGemmaNodeParser",
    "EmbeddingGemmaTextSplitter",
    "InvalidArgumentError",
    "ModelNotFoundError",
    "NonFiniteEmbeddingError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'embgemma_plugins' has no attribute {name!r}")
