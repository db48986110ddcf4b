"""Cross-request dynamic batching: one worker thread, one session, any number of requests.

Requests put their tokenised texts in one queue.  The worker waits until the queue
holds a full batch (``batch_tokens`` padded tokens) or its oldest text has waited
``max_wait`` seconds, then plans length-sorted token-budget batches over everything
queued (:func:`~embgemma_plugins.batching.plan_batches`, as the offline path does) and
runs the batch that holds the oldest text, so no text waits behind a stream of newer
ones.  Rows go back to their requests' futures on the event loop
(``call_soon_threadsafe``); the loop itself never runs the model.

A text's row never depends on its batch mates: it is embedded from the same ids as
``EmbeddingGemma.embed_tokens`` embeds it offline, and ``embed_tokens`` never pads a
text across a length where the arithmetic changes path (docs/variants.md, batch
invariance), so a text gets its vector alone within float rounding in every variant.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from embgemma_plugins.batching import DEFAULT_MAX_BATCH_SIZE, plan_batches
from embgemma_plugins.errors import NonFiniteEmbeddingError
from embgemma_plugins.serve.errors import ApiError, backend_error

Embed = Callable[[list[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class BatchStats:
    """One session run, for the metrics."""

    rows: int
    padded_tokens: int
    tokens: int
    seconds: float


@dataclass
class _Job:
    """One request's texts: its future and the rows filled in so far."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[np.ndarray]
    rows: np.ndarray
    remaining: int
    failed: bool = False


@dataclass
class _Item:
    ids: np.ndarray
    job: _Job
    row: int
    queued_at: float = field(default_factory=time.monotonic)


class QueueFull(Exception):
    """The queue cannot take a request's texts now; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


class Batcher:
    """The queue and its worker thread (see the module docstring)."""

    def __init__(self, embed: Embed, width: int, batch_tokens: int, max_wait_s: float,
                 max_queue_texts: int,
                 on_batch: Callable[[BatchStats], None] | None = None,
                 bounds: tuple[int, ...] = ()) -> None:
        self._embed = embed
        self.bounds = bounds  # the model's length bounds: batches as the offline path forms
        self._width = width
        self.batch_tokens = batch_tokens
        self.max_wait_s = max_wait_s
        self.max_queue_texts = max_queue_texts
        self._on_batch = on_batch
        self._cond = threading.Condition()
        self._pending: list[_Item] = []
        self._longest = 0  # of the queued texts: enough to tell a full batch cheaply
        self._reserved = 0
        self._stopping = False
        self._tokens_per_s = 0.0
        self._thread = threading.Thread(target=self._work, name="embgemma-batcher", daemon=True)

    # -- the event loop's side ------------------------------------------------------
    @property
    def queued(self) -> int:
        """Texts admitted and not yet taken into a batch."""
        return len(self._pending) + self._reserved

    def start(self) -> None:
        self._thread.start()

    def admit(self, n: int) -> None:
        """Reserve room for ``n`` texts, or raise :class:`QueueFull` (nothing waits)."""
        with self._cond:
            if self._stopping:
                raise ApiError(503, "the server is shutting down", code="shutting_down")
            if len(self._pending) + self._reserved + n > self.max_queue_texts:
                raise QueueFull(self._retry_after())
            self._reserved += n

    def cancel(self, n: int) -> None:
        """Give back a reservation whose request failed before :meth:`submit`."""
        with self._cond:
            self._reserved -= n

    def submit(self, ids: Sequence[np.ndarray]) -> asyncio.Future[np.ndarray]:
        """Queue admitted texts; the future resolves to their (n, width) rows in order."""
        loop = asyncio.get_running_loop()
        job = _Job(loop, loop.create_future(), np.empty((len(ids), self._width), np.float32),
                   len(ids))
        now = time.monotonic()
        with self._cond:
            self._reserved -= len(ids)
            self._pending.extend(_Item(x, job, i, now) for i, x in enumerate(ids))
            self._longest = max(self._longest, max(len(x) for x in ids))
            self._cond.notify()
        return job.future

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new texts, finish every queued one, and end the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _retry_after(self) -> int:
        """Seconds until the queue has drained at the recently measured speed (>= 1)."""
        if self._tokens_per_s <= 0:
            return 1
        queued = sum(len(it.ids) for it in self._pending)
        return max(1, math.ceil(queued / self._tokens_per_s))

    # -- the worker's side ----------------------------------------------------------
    def _full(self) -> bool:
        n = len(self._pending)
        return n * self._longest >= self.batch_tokens or n >= DEFAULT_MAX_BATCH_SIZE

    def _next_batch(self) -> list[_Item] | None:
        """Wait for work and for a batch to fill; ``None`` once stopped and drained."""
        with self._cond:
            while not self._pending:
                if self._stopping:
                    return None
                self._cond.wait()
            while not self._stopping and not self._full():
                left = self._pending[0].queued_at + self.max_wait_s - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            lengths = [len(it.ids) for it in self._pending]
            chosen = next(b for b in plan_batches(lengths, self.batch_tokens, bounds=self.bounds)
                          if 0 in b)
            taken = set(chosen.tolist())
            batch = [self._pending[i] for i in sorted(taken)]
            self._pending = [it for i, it in enumerate(self._pending) if i not in taken]
            self._longest = max((len(it.ids) for it in self._pending), default=0)
            return batch

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._run(batch)

    def _run(self, batch: list[_Item]) -> None:
        ids = [it.ids for it in batch]
        start = time.perf_counter()
        try:
            rows = self._embed(ids)
        except NonFiniteEmbeddingError as e:
            bad = {id(batch[i].job) for i in e.indices}
            for it in batch:
                if id(it.job) in bad:
                    self._fail(it.job, backend_error(
                        f"the model produced NaN/Inf for input {it.row} of this request; "
                        "nothing was returned for it"))
            rest = [it for it in batch if id(it.job) not in bad]
            if rest:
                self._run(rest)
            return
        except Exception as e:  # the session failed: every request of the batch hears why
            for it in batch:
                self._fail(it.job, backend_error(f"the model failed: {type(e).__name__}: {e}"))
            return
        seconds = time.perf_counter() - start
        tokens = sum(len(x) for x in ids)
        if seconds > 0:
            rate = tokens / seconds
            self._tokens_per_s = rate if self._tokens_per_s <= 0 else (
                0.8 * self._tokens_per_s + 0.2 * rate)
        if self._on_batch is not None:
            self._on_batch(BatchStats(len(batch), len(batch) * max(len(x) for x in ids),
                                      tokens, seconds))
        for it, row in zip(batch, rows, strict=True):
            job = it.job
            if job.failed:
                continue
            job.rows[it.row] = row
            job.remaining -= 1
            if job.remaining == 0:
                _resolve(job, job.rows, None)

    def _fail(self, job: _Job, error: Exception) -> None:
        if not job.failed:
            job.failed = True
            _resolve(job, None, error)


def _resolve(job: _Job, rows: np.ndarray | None, error: Exception | None) -> None:
    def done() -> None:
        if job.future.done():  # the request was cancelled (client gone)
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(rows)  # type: ignore[arg-type]

    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
        job.loop.call_soon_threadsafe(done)
