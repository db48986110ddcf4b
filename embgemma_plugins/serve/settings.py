"""What ``embgemma serve`` is started with; checked once, before anything loads."""

from __future__ import annotations

from dataclasses import dataclass

from embgemma_plugins.batching import DEFAULT_BATCH_TOKENS
from embgemma_plugins.errors import InvalidArgumentError
from embgemma_plugins.maths import check_dimensions
from embgemma_plugins.settings import ModelSettings
from embgemma_plugins.store.layout import DEFAULT_MODEL

#: OpenAI's own limit of inputs per request: clients batch up to it (LangChain sends 1000).
MAX_REQUEST_TEXTS = 2048
#: Enough for 2,048 texts of a few KB each; a larger body is refused before it is read.
MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ServeSettings:
    """Options of ``embgemma serve`` (the CLI's help says what each one does)."""

    model: str = DEFAULT_MODEL
    variant: str | None = None
    dimensions: int = 768  # of a request that names none; any request may ask for another
    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str | None = None
    max_batch_tokens: int = DEFAULT_BATCH_TOKENS
    max_wait_ms: float = 2.0
    max_queue_texts: int = 4 * MAX_REQUEST_TEXTS
    max_request_texts: int = MAX_REQUEST_TEXTS
    max_body_bytes: int = MAX_BODY_BYTES
    truncate: bool = False  # OpenAI requests: cut inputs over 2,048 tokens instead of a 413
    threads: int | None = None
    providers: str | None = None

    def __post_init__(self) -> None:
        check_dimensions(self.dimensions)
        self.model_settings()  # the model settings' own checks
        for name in ("max_batch_tokens", "max_queue_texts", "max_request_texts",
                     "max_body_bytes"):
            if getattr(self, name) < 1:
                raise InvalidArgumentError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise InvalidArgumentError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.max_queue_texts < self.max_request_texts:
            raise InvalidArgumentError(
                f"max_queue_texts ({self.max_queue_texts}) must be at least max_request_texts "
                f"({self.max_request_texts}), or a request of the maximum size could never "
                "enter the queue"
            )
        if not 0 <= self.port <= 65535:
            raise InvalidArgumentError(f"port must be in 0..65535, got {self.port}")

    def model_settings(self) -> ModelSettings:
        """The one model the server opens: at 768 dimensions, which every request's
        ``dimensions`` cuts (Matryoshka) exactly as ``EmbeddingGemma(dimensions=d)`` does."""
        return ModelSettings(self.model, self.variant, 768, self.providers, self.threads,
                             batch_tokens=self.max_batch_tokens)
