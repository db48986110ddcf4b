"""Prometheus metrics of one server (its own registry, so several apps can coexist)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from embgemma_plugins.serve.batcher import BatchStats

CONTENT_TYPE = CONTENT_TYPE_LATEST
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_TOKENS = (16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """Requests and errors by route and status, what was embedded, batches, queue depth."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("embgemma_requests", "HTTP requests answered, by route and "
                                "status", ["route", "status"], registry=r)
        self.errors = Counter("embgemma_request_errors", "HTTP requests answered with an "
                              "error status (>= 400), by route and status",
                              ["route", "status"], registry=r)
        self.latency = Histogram("embgemma_request_duration_seconds", "Time from request to "
                                 "response, by route", ["route"], buckets=_SECONDS, registry=r)
        self.texts = Counter("embgemma_texts_embedded", "Texts run through the model",
                             registry=r)
        self.tokens = Counter("embgemma_tokens_embedded", "Tokens run through the model "
                              "(prompt, BOS and EOS included; no padding)", registry=r)
        self.batch_size = Histogram("embgemma_batch_size", "Texts per session run",
                                    buckets=_SIZES, registry=r)
        self.batch_tokens = Histogram("embgemma_batch_padded_tokens", "Padded tokens (rows x "
                                      "longest row) per session run", buckets=_TOKENS,
                                      registry=r)
        self.batch_seconds = Histogram("embgemma_batch_duration_seconds", "Session run time",
                                       buckets=_SECONDS, registry=r)
        self.queue = Gauge("embgemma_queue_texts", "Texts admitted and waiting for a batch",
                           registry=r)
        self.loaded = Gauge("embgemma_model_loaded", "1 once the model is loaded", registry=r)

    def track_queue(self, depth: Callable[[], float]) -> None:
        self.queue.set_function(depth)

    def batch(self, stats: BatchStats) -> None:
        """Called by the batcher's worker thread after each run."""
        self.texts.inc(stats.rows)
        self.tokens.inc(stats.tokens)
        self.batch_size.observe(stats.rows)
        self.batch_tokens.observe(stats.padded_tokens)
        self.batch_seconds.observe(stats.seconds)

    def request(self, route: str, status: int, seconds: float) -> None:
        code = str(status)
        self.requests.labels(route, code).inc()
        if status >= 400:
            self.errors.labels(route, code).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
