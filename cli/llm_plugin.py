"""EmbeddingGemma as embedding models of Simon Willison's ``llm`` command-line tool.

Registered through llm's plugin hook (the ``llm`` entry point of this package), so with
both installed ``llm embed-models`` lists ``embeddinggemma-300m`` (alias
``embeddinggemma``: documents, 768 dimensions, prompt ``title: none | text: ``),
``embeddinggemma-300m-query`` (alias ``embeddinggemma-query``: queries, prompt
``task: search result | query: ``), and the same pairs at 512, 256 and 128 dimensions
(``embeddinggemma-300m-256``, ``embeddinggemma-300m-256-query``, ...).

llm's embedding models have no query/document distinction, so the side is part of the
model id: ``llm embed-multi`` stores documents with ``embeddinggemma-300m``; a query
vector comes from ``embeddinggemma-300m-query`` (``llm similar`` embeds its text with
the collection's model, i.e. the document prompt: see docs/llm.md).

Which weights run: ``EMBGEMMA_LLM_MODEL`` (a hub id or a local export folder; default
``google/embeddinggemma-300m``) and ``EMBGEMMA_LLM_VARIANT`` (``fp32``, ``int8``,
``int4``; default: the store's).  Importing this module loads neither ONNX Runtime nor
the model: llm imports every plugin at start-up, whatever the command.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import click

from embgemma_plugins.errors import EmbeddingGemmaError, missing_extra

try:
    from llm.hookspecs import hookimpl
    from llm.models import EmbeddingModel
except ImportError as e:  # pragma: no cover - llm itself is what loads this module
    raise missing_extra(e, "the llm plugin needs llm", "llm") from e


if TYPE_CHECKING:
    from embgemma_plugins.model import EmbeddingGemma
    from embgemma_plugins.settings import ModelSettings

MODEL_ENV = "EMBGEMMA_LLM_MODEL"
VARIANT_ENV = "EMBGEMMA_LLM_VARIANT"
PREFIX = "embeddinggemma-300m"
SIDES = ("document", "query")
#: Matryoshka sizes (as :data:`embgemma_plugins.maths.DIMENSIONS`, without importing numpy).
DIMENSIONS = (768, 512, 256, 128)


def model_id(dimensions: int, side: str) -> str:
    """``embeddinggemma-300m[-<dimensions>][-query]``."""
    size = "" if dimensions == DIMENSIONS[0] else f"-{dimensions}"
    return f"{PREFIX}{size}{'-query' if side == 'query' else ''}"


class EmbeddingGemmaLLM(EmbeddingModel):
    """One side (documents or queries) at one size; the model opens on first use."""

    supports_text = True
    supports_binary = False
    batch_size = 256  # texts per call to the model, which cuts token-budget batches itself

    def __init__(self, dimensions: int, side: str) -> None:
        self.dimensions, self.side = dimensions, side
        self.model_id = model_id(dimensions, side)
        self._model: EmbeddingGemma | None = None
        self._settings: ModelSettings | None = None

    def __str__(self) -> str:
        return f"EmbeddingGemma: {self.model_id}"

    def client(self) -> EmbeddingGemma:
        """The model the environment names (reopened if the environment changed)."""
        from embgemma_plugins.settings import ModelSettings
        from embgemma_plugins.shared import shared_model
        from embgemma_plugins.store.layout import DEFAULT_MODEL

        settings = ModelSettings(model=os.environ.get(MODEL_ENV) or DEFAULT_MODEL,
                                 variant=os.environ.get(VARIANT_ENV) or None,
                                 dimensions=self.dimensions)
        if self._model is None or self._settings != settings:  # held here: llm calls often
            self._model, self._settings = shared_model(settings), settings
        return self._model

    def embed_batch(self, items: Iterable[str | bytes], *, key: str | None = None
                    ) -> Iterator[list[float]]:
        texts = [item if isinstance(item, str) else item.decode("utf-8") for item in items]
        try:
            model = self.client()
            vectors = (model.embed_queries(texts) if self.side == "query"
                       else model.embed_documents(texts))
        except EmbeddingGemmaError as e:  # llm's CLI shows click's errors as one line
            named = [f"{v}={os.environ[v]}" for v in (MODEL_ENV, VARIANT_ENV) if os.environ.get(v)]
            where = f" (from {', '.join(named)})" if named else ""
            raise click.ClickException(f"{self.model_id}{where}: {e}") from e
        rows: list[list[float]] = vectors.tolist()
        yield from rows


#: Made once: llm looks its models up again and again, and each keeps its session.
MODELS = [EmbeddingGemmaLLM(d, side) for d in DIMENSIONS for side in SIDES]
ALIASES = {model_id(768, "document"): ["embeddinggemma"],
           model_id(768, "query"): ["embeddinggemma-query"]}


@hookimpl
def register_embedding_models(register: Any) -> None:
    for model in MODELS:
        register(model, aliases=ALIASES.get(model.model_id, []))
