"""The model behind the routes: loaded once in the background, fed through the batcher.

The session is opened at 768 dimensions; each request's vectors are cut to its own
``dimensions`` with :func:`~embgemma_plugins.maths.truncate`, exactly as
``EmbeddingGemma(dimensions=d)`` cuts them, so one server answers every size.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import numpy as np

from embgemma_plugins import EmbeddingGemma
from embgemma_plugins.errors import (
    EmbeddingGemmaError,
    InvalidArgumentError,
    NonFiniteEmbeddingError,
)
from embgemma_plugins.maths import truncate
from embgemma_plugins.model import MAX_LENGTH
from embgemma_plugins.prompts import DOCUMENT_TASK, normalise_task
from embgemma_plugins.serve.batcher import Batcher, BatchStats, QueueFull
from embgemma_plugins.serve.errors import ApiError, bad_request
from embgemma_plugins.serve.settings import ServeSettings
from embgemma_plugins.serve.wire import NO_PROMPT, EmbedCall, TaskChoice
from embgemma_plugins.tokenizer import Encoded

log = logging.getLogger("embgemma.serve")

#: Requests with more characters than this are tokenised in a worker thread, so a large
#: request does not stall the event loop; small ones are tokenised in place (cheaper).
INLINE_TOKENIZE_CHARS = 16_384


@dataclass(frozen=True)
class Embedded:
    vectors: np.ndarray  # (n, dimensions) float32, unit norm
    tokens: int  # tokens the model ran: prompt, BOS and EOS included


class EmbeddingService:
    """Loads the model (:meth:`load`, in a thread) and embeds :class:`EmbedCall` s."""

    def __init__(self, settings: ServeSettings,
                 on_batch: Callable[[BatchStats], None] | None = None) -> None:
        self.settings = settings
        self.model: EmbeddingGemma | None = None
        self.batcher: Batcher | None = None
        self.error: str | None = None
        self.names: list[str] = []  # model names (and bases of aliases) this server answers to
        self.tasks: list[str] = []  # the model's task (prompt) names
        self._on_batch = on_batch
        self._loaded = threading.Event()

    @property
    def ready(self) -> bool:
        return self._loaded.is_set() and self.error is None

    def load(self) -> None:
        """Open the model, warm it up and start the batcher (raises on failure)."""
        s = self.settings
        model = EmbeddingGemma.from_settings(s.model_settings())
        tasks = model.prompts.names()  # read the prompt table now: a broken one fails here
        try:
            model.embed(["warm up"], task=DOCUMENT_TASK)
        except NonFiniteEmbeddingError as e:  # each request will be refused, not served NaN
            log.warning("embgemma serve: the model produced NaN/Inf on a warm-up text: %s", e)
        manifest = model.files.manifest
        ids = [s.model, *([manifest.model_id] if manifest else [])]
        self.names = list(dict.fromkeys([*ids, *(Path(i).name for i in ids)]))
        self.tasks = tasks
        self.batcher = Batcher(model.embed_tokens, 768, s.max_batch_tokens,
                               s.max_wait_ms / 1000, s.max_queue_texts, self._on_batch,
                               model.bounds)
        self.batcher.start()
        self.model = model
        self._loaded.set()
        log.info("model %s (%s) loaded; tasks: %s", s.model, model.variant, ", ".join(tasks))

    def stop(self) -> None:
        if self.batcher is not None:
            self.batcher.stop()

    def require(self) -> EmbeddingGemma:
        if self.error is not None:
            raise ApiError(503, f"the model failed to load: {self.error}", code="model_error")
        if self.model is None:
            raise ApiError(503, "the model is loading; retry shortly", code="model_loading",
                           retry_after=1)
        return self.model

    @property
    def model_id(self) -> str:
        return self.names[0] if self.names else self.settings.model

    # -- prompts --------------------------------------------------------------------
    def task_of(self, choices: tuple[TaskChoice, ...]) -> str:
        """The one task the request's fields name (the document task when none does)."""
        model = self.require()
        if not choices:
            return DOCUMENT_TASK
        chosen: dict[str, TaskChoice] = {}
        for c in choices:
            chosen.setdefault(self._prompt(model, c), c)
        if len(chosen) > 1:
            a, b = list(chosen.values())[:2]
            raise bad_request(
                f"conflicting tasks: '{a.field}' names {a.name!r} but '{b.field}' names "
                f"{b.name!r}; give one", b.field,
            )
        return choices[0].name

    @staticmethod
    def _prompt(model: EmbeddingGemma, choice: TaskChoice) -> str:
        if normalise_task(choice.name) == NO_PROMPT:
            return ""
        try:
            return model.prompt_for(task=choice.name)
        except InvalidArgumentError as e:
            raise bad_request(f"'{choice.field}': {e} (or {NO_PROMPT!r}: no prompt, the text "
                              "carries its own)", choice.field) from None

    def prompt_of(self, choices: tuple[TaskChoice, ...]) -> str:
        """The prompt string of the task the request names."""
        model = self.require()
        return self._prompt(model, TaskChoice(self.task_of(choices), "task"))

    def prompts_for(self, call: EmbedCall) -> str | list[str]:
        """One prompt for all texts, or one per text when titles are given."""
        model = self.require()
        task = self.task_of(call.tasks)
        if call.titles is None:
            return self.prompt_of(call.tasks)
        if normalise_task(task) != normalise_task(DOCUMENT_TASK):
            raise bad_request(f"'titles' are for the document task, not {task!r}", "titles")
        return [model.prompts.document_prompt(t) for t in call.titles]

    # -- embedding ------------------------------------------------------------------
    async def embed(self, call: EmbedCall) -> Embedded:
        model = self.require()
        s = self.settings
        n = len(call.texts)
        if n > s.max_request_texts:
            raise ApiError(413, f"{n} inputs in one request, over the server's limit of "
                           f"{s.max_request_texts} (--max-request-texts); split the request",
                           call.field, "too_many_inputs")
        prompts = self.prompts_for(call)
        batcher = self.batcher
        assert batcher is not None
        try:
            batcher.admit(n)
        except QueueFull as e:
            raise ApiError(429, f"the server's queue is full ({batcher.queued} texts waiting, "
                           f"--max-queue-texts {s.max_queue_texts}); retry after "
                           f"{e.retry_after} s", code="queue_full",
                           retry_after=e.retry_after) from None
        try:
            encoded = await self._tokenize(model, call.texts, prompts)
            allow = call.truncate if call.truncate is not None else s.truncate
            self._check_lengths(encoded, allow, call.field)
        except BaseException:
            batcher.cancel(n)
            raise
        rows = await batcher.submit(encoded.ids)
        dims = call.dimensions or s.dimensions
        return Embedded(truncate(rows, dims), int(sum(len(x) for x in encoded.ids)))

    async def _tokenize(self, model: EmbeddingGemma, texts: list[str],
                        prompts: str | list[str]) -> Encoded:
        if sum(len(t) for t in texts) <= INLINE_TOKENIZE_CHARS:
            return model.tokenize(texts, prompts)
        return await anyio.to_thread.run_sync(model.tokenize, texts, prompts)

    @staticmethod
    def _check_lengths(encoded: Encoded, allow_truncate: bool, field: str) -> None:
        over = np.flatnonzero(encoded.truncated)
        if len(over) and not allow_truncate:
            i = int(over[0])
            others = f" ({len(over) - 1} more inputs are too long)" if len(over) > 1 else ""
            raise ApiError(
                413, f"{field}[{i}] is {int(encoded.lengths[i])} tokens (prompt, BOS and EOS "
                f"included), over the model's {MAX_LENGTH}{others}; shorten it, or allow "
                "truncation (TEI: \"truncate\": true; OpenAI route: start the server with "
                "--truncate)", f"{field}[{i}]", "context_length_exceeded",
            )


def load_in_background(service: EmbeddingService, on_fatal: Callable[[], None]) -> None:
    """Load in a daemon thread; a failure is logged, kept for /health, and ends the server."""
    def run() -> None:
        try:
            service.load()
        except (EmbeddingGemmaError, OSError, ValueError, RuntimeError) as e:
            service.error = f"{type(e).__name__}: {e}"
            log.error("embgemma serve: the model could not be loaded: %s", e)
            service._loaded.set()
            on_fatal()

    threading.Thread(target=run, name="embgemma-load", daemon=True).start()
