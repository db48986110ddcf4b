"""The two baselines of ``benchmarks.serve``, each in its own process (own peak RSS):

``offline``: ``EmbeddingGemma.embed`` of the benchmark's texts in one call (the library's
own batching), printing ``RESULT {json}`` with texts/s, token counts and peak RSS.

``naive``: the one-request-at-a-time server a hand-written wrapper is: Starlette on
uvicorn, each request embedded alone by ``model.embed`` in a worker thread, one at a
time (a lock: concurrent session runs on two cores only fight), same wire format.

    python -m benchmarks.serve_workers offline --model M --variant int8 TEXTS.json
    python -m benchmarks.serve_workers naive --model M --variant int8 --port 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import sys
import time
from pathlib import Path
from typing import Any

RESULT = "RESULT "


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def offline(model: str, variant: str | None, spec_path: str) -> dict[str, Any]:
    """Embed each text set of the spec in one call; texts/s and token counts per set."""
    from embgemma_plugins import EmbeddingGemma

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    m = EmbeddingGemma(model, variant=variant)
    m.embed(["warm up"], task="document")
    out: dict[str, Any] = {}
    for name, (texts, task) in spec.items():
        tokens = [len(x) for x in m.tokenize(texts, m.prompt_for(task=task)).ids]
        start = time.perf_counter()
        m.embed(texts, task=task)
        seconds = time.perf_counter() - start
        out[name] = {"texts": len(texts), "tokens": sum(tokens), "seconds": seconds,
                     "token_counts": tokens}
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def naive_app(model: str, variant: str | None) -> Any:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from embgemma_plugins import EmbeddingGemma

    m = EmbeddingGemma(model, variant=variant)
    m.embed(["warm up"], task="document")
    lock = asyncio.Lock()

    async def embeddings(request: Request) -> JSONResponse:
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        task = "query" if body.get("input_type") == "query" else "document"
        async with lock:  # one request at a time
            vectors = await run_in_threadpool(m.embed, texts, task)
        return JSONResponse({"object": "list", "model": model, "data": [
            {"object": "embedding", "index": i, "embedding": v}
            for i, v in enumerate(vectors.tolist())]})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({})

    return Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"]),
                             Route("/health", health)])


def naive(model: str, variant: str | None, port: int) -> None:
    import uvicorn

    app = naive_app(model, variant)
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    print(f"naive server listening on http://127.0.0.1:{sock.getsockname()[1]}",
          file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["offline", "naive"])
    p.add_argument("spec", nargs="?")
    p.add_argument("--model", required=True)
    p.add_argument("--variant")
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args()
    if a.mode == "offline":
        print(RESULT + json.dumps(offline(a.model, a.variant, a.spec)), flush=True)
    else:
        naive(a.model, a.variant, a.port)


if __name__ == "__main__":
    main()
