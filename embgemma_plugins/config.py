"""``load_embeddings``: one call from a config section, file or provider string to the
LangChain or LlamaIndex embedding object.

    from embgemma_plugins.config import load_embeddings

    embeddings = load_embeddings("rag.yaml", framework="langchain", key="rag.embeddings")
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from embgemma_plugins.configfile import is_provider_string
from embgemma_plugins.conventions import framework_name
from embgemma_plugins.framework import EmbeddingGemmaSettings

__all__ = ["EmbeddingGemmaSettings", "load_embeddings"]


def load_embeddings(
    source: Mapping[str, Any] | str | Path, framework: str, key: str = "embeddings"
) -> EmbeddingGemmaSettings:
    """One call from a section, a provider string or a config file (+ ``key``) to the
    ``framework``'s object: ``"langchain"`` or ``"llamaindex"`` (any spelling of either:
    ``LangChain``, ``llama_index``, ``llama-index``, ``LlamaIndex``, ...)."""
    cls: type[EmbeddingGemmaSettings]
    if framework_name(framework) == "langchain":
        from embgemma_plugins.langchain import EmbeddingGemmaEmbeddings as cls
    else:
        from embgemma_plugins.llamaindex import EmbeddingGemmaEmbedding as cls
    if isinstance(source, Mapping):
        return cls.from_config(source)
    if is_provider_string(source):
        return cls.from_provider_string(str(source))
    return cls.from_config_file(source, key)
