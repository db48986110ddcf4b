"""``embgemma serve``: an OpenAI- and TEI-compatible embedding server (docs/serve.md).

Requests from any number of clients enter one queue; a single worker thread forms
length-sorted, token-budget batches across them and runs the one ONNX session, so
two cores stay busy under many small requests while the event loop only parses,
tokenises and answers.  Every vector equals what :class:`EmbeddingGemma` returns
offline for the same text, task and dimensions.
"""

from __future__ import annotations

from embgemma_plugins.errors import missing_extra

try:
    import orjson  # noqa: F401
    import prometheus_client  # noqa: F401
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised by a subprocess test
    raise missing_extra(e, "embgemma serve needs the serve extra", "serve") from e

from embgemma_plugins.serve.settings import ServeSettings

__all__ = ["ServeSettings"]
