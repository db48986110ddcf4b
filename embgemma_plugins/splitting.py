"""What the framework text splitters share: the model's tokenizer and prompts, loaded lazily.

:class:`DocumentChunker` opens only a variant's tokenizer and prompt table (no ONNX
session), on first use, and pickles empty, so a splitter is cheap to construct and to ship
to worker processes. Chunks come from :func:`embgemma_plugins.chunking.chunk_text`: the
same token-exact chunks ``EmbeddingGemma.chunk`` and ``embgemma embed --chunk-tokens``
give, budgeted against the exact prompt each chunk will be embedded with.
"""

from __future__ import annotations

import threading
from typing import Any

from embgemma_plugins.chunking import Chunk, chunk_text, count_tokens
from embgemma_plugins.prompts import PromptTable
from embgemma_plugins.store.layout import DEFAULT_MODEL
from embgemma_plugins.tokenizer import Tokenizer


class DocumentChunker:
    """Token-exact chunks for the model ``model`` (``variant``), loaded on first use."""

    def __init__(self, model: str = DEFAULT_MODEL, variant: str | None = None) -> None:
        self.__setstate__({"model": str(model), "variant": variant})

    def __getstate__(self) -> dict[str, Any]:
        return {"model": self.model, "variant": self.variant}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.model, self.variant = state["model"], state["variant"]
        self._loaded: tuple[Tokenizer, PromptTable] | None = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[Tokenizer, PromptTable]:
        with self._lock:
            if self._loaded is None:
                from embgemma_plugins.store.resolve import load_prompt_table, locate

                files = locate(self.model, self.variant, True)
                self._loaded = Tokenizer(files.tokenizer), load_prompt_table(files)
            return self._loaded

    @property
    def tokenizer(self) -> Tokenizer:
        return self._load()[0]

    def prompt(self, title: str | None = None) -> str:
        """The document prompt: ``title: {title or none} | text: ``."""
        return self._load()[1].document_prompt(title)

    def chunk(
        self, text: str, prompt: str, max_tokens: int, overlap: int | None = None
    ) -> list[Chunk]:
        return chunk_text(self.tokenizer, text, prompt, max_tokens, overlap)

    def count(self, text: str, prompt: str = "") -> int:
        """Tokens of ``prompt + text`` as the model sees it (BOS and EOS included)."""
        return int(count_tokens(self.tokenizer, [prompt + text])[0])
