"""The Starlette application: routes of both dialects, auth, limits, metrics, access log.

Starlette rather than FastAPI: the wire formats are OpenAI's and TEI's, with their own
error shapes and messages naming fields, which FastAPI's pydantic validation (422
``{"detail": [...]}``) would have to be undone for; Starlette is the ASGI toolkit
FastAPI is built on, without that layer (docs/serve.md).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from embgemma_plugins import __version__
from embgemma_plugins.model import MAX_LENGTH
from embgemma_plugins.serve import responses, wire
from embgemma_plugins.serve.errors import OPENAI, TEI, ApiError
from embgemma_plugins.serve.metrics import CONTENT_TYPE, Metrics
from embgemma_plugins.serve.service import EmbeddingService, load_in_background
from embgemma_plugins.serve.settings import ServeSettings

access = logging.getLogger("embgemma.serve.access")
log = logging.getLogger("embgemma.serve")
JSON = "application/json"
Handler = Callable[[Request, dict[str, Any]], Awaitable[Response]]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    content = body if isinstance(body, bytes) else responses.dumps(body)
    return Response(content, status, headers, media_type=JSON)


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON; 413 past ``limit`` bytes (before reading it when it says so)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body is {declared} bytes, over the server's limit "
                       f"of {limit} (--max-body-bytes)", code="request_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"the request body is over the server's limit of {limit} "
                           "bytes (--max-body-bytes)", code="request_too_large")
    try:
        return responses.loads(bytes(body))
    except ValueError as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}",
                       code="invalid_json") from None


class Server:
    """State shared by the routes: settings, the service, metrics, the key."""

    def __init__(self, settings: ServeSettings, on_fatal: Callable[[], None]) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.service = EmbeddingService(settings, on_batch=self.metrics.batch)
        self.on_fatal = on_fatal
        self.created = responses.started()
        self._key = settings.api_key.encode() if settings.api_key else None

    def check_key(self, request: Request) -> None:
        if self._key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                  self._key):
            what = "no API key was given" if not given else "the API key is not valid"
            raise ApiError(401, f"{what}: send 'Authorization: Bearer <key>' with the key the "
                           "server was started with (--api-key)", code="invalid_api_key")

    def route(self, path: str, dialect: str, handler: Handler, method: str = "POST",
              auth: bool = True) -> Route:
        """``handler`` wrapped with auth, error shapes, metrics and an access-log line."""
        async def endpoint(request: Request) -> Response:
            start = time.perf_counter()
            info: dict[str, Any] = {}
            try:
                if auth:
                    self.check_key(request)
                response = await handler(request, info)
            except ApiError as e:
                response = json_response(e.body(dialect), e.status_for(dialect), e.headers())
                info["error"] = e.message
            except Exception as e:  # a bug: answer in the dialect's shape, log the traceback
                log.exception("unhandled error on %s", path)
                err = ApiError(500, f"internal error: {type(e).__name__}: {e}")
                response = json_response(err.body(dialect), 500)
                info["error"] = err.message
            seconds = time.perf_counter() - start
            self.metrics.request(path, response.status_code, seconds)
            if path != "/metrics" and path != "/health":
                client = request.client.host if request.client else None
                access.info(json.dumps({
                    "ts": round(time.time(), 3), "method": request.method, "path": path,
                    "status": response.status_code, "ms": round(seconds * 1000, 2),
                    "client": client, **info}))
            return response

        return Route(path, endpoint, methods=[method])

    # -- OpenAI ---------------------------------------------------------------------
    async def embeddings(self, request: Request, info: dict[str, Any]) -> Response:
        self.service.require()
        body = await read_json(request, self.settings.max_body_bytes)
        call = wire.openai_call(body, self.service.names, self.service.tasks)
        done = await self.service.embed(call)
        info.update(texts=len(call.texts), tokens=done.tokens)
        name = call.model if call.model and self._ours(call.model) else self.service.model_id
        return json_response(responses.openai_embeddings(done.vectors, call.encoding, name,
                                                         done.tokens))

    def _ours(self, model: str) -> bool:
        return model.rsplit(":", 1)[0] in self.service.names or model in self.service.names

    def model_ids(self) -> list[str]:
        base = self.service.model_id
        return [base, *(f"{base}:{t.replace(' ', '-')}" for t in self.service.tasks)]

    async def models(self, request: Request, info: dict[str, Any]) -> Response:
        self.service.require()
        return json_response(responses.openai_models(self.model_ids(), self.created))

    async def model(self, request: Request, info: dict[str, Any]) -> Response:
        self.service.require()
        wanted = request.path_params["model"]
        if wanted not in self.model_ids():
            raise ApiError(404, f"the model {wanted!r} does not exist here; this server "
                           f"serves {', '.join(self.model_ids())}", "model", "model_not_found")
        return json_response(responses.openai_model(wanted, self.created))

    # -- TEI ------------------------------------------------------------------------
    async def embed(self, request: Request, info: dict[str, Any]) -> Response:
        self.service.require()
        call = wire.tei_call(await read_json(request, self.settings.max_body_bytes),
                             request.query_params)
        done = await self.service.embed(call)
        info.update(texts=len(call.texts), tokens=done.tokens)
        return json_response(responses.vectors_body(done.vectors))

    async def tokenize(self, request: Request, info: dict[str, Any]) -> Response:
        model = self.service.require()
        texts, task, special = wire.tokenize_call(
            await read_json(request, self.settings.max_body_bytes))
        prompt = self.service.prompt_of((task,) if task else ())
        lister = responses.TokenLister(model.tokenizer)
        listed = await anyio.to_thread.run_sync(
            lambda: [lister.tokens(prompt + t, special) for t in texts])
        return json_response(listed)

    async def info(self, request: Request, info: dict[str, Any]) -> Response:
        model = self.service.require()
        s = self.settings
        return json_response({
            "model_id": self.service.model_id, "model_sha": model.revision,
            "model_dtype": {"fp32": "float32"}.get(model.variant, model.variant),
            "model_type": {"embedding": {"pooling": "mean"}},
            "max_concurrent_requests": s.max_queue_texts, "max_input_length": MAX_LENGTH,
            "max_batch_tokens": s.max_batch_tokens, "max_batch_requests": None,
            "max_client_batch_size": s.max_request_texts, "auto_truncate": s.truncate,
            "tokenization_workers": 1, "version": __version__, "sha": None,
            "docker_label": None, "dimensions": s.dimensions,
            "prompt_names": self.service.tasks, "default_prompt_name": "document",
        })

    async def health(self, request: Request, info: dict[str, Any]) -> Response:
        self.service.require()
        return Response(b"", 200)

    async def prometheus(self, request: Request, info: dict[str, Any]) -> Response:
        return Response(self.metrics.render(), 200, media_type=CONTENT_TYPE)


def create_app(settings: ServeSettings, on_fatal: Callable[[], None] | None = None
               ) -> Starlette:
    """The ASGI app; its lifespan loads the model in the background and drains on exit."""
    server = Server(settings, on_fatal or (lambda: None))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        load_in_background(server.service, server.on_fatal)
        server.metrics.track_queue(
            lambda: server.service.batcher.queued if server.service.batcher else 0)
        server.metrics.loaded.set_function(lambda: 1.0 if server.service.ready else 0.0)
        yield
        await anyio.to_thread.run_sync(server.service.stop)

    r = server.route
    routes = [
        r("/v1/embeddings", OPENAI, server.embeddings),
        r("/embeddings", OPENAI, server.embeddings),
        r("/v1/models", OPENAI, server.models, "GET"),
        r("/v1/models/{model:path}", OPENAI, server.model, "GET"),
        r("/embed", TEI, server.embed),
        r("/", TEI, server.embed),  # TEI answers embeddings at its root (InferenceClient)
        r("/tokenize", TEI, server.tokenize),
        r("/info", TEI, server.info, "GET"),
        r("/health", TEI, server.health, "GET", auth=False),
        r("/metrics", TEI, server.prometheus, "GET"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.server = server
    return app
