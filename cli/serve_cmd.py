"""``embgemma serve``: the OpenAI- and TEI-compatible embedding server (docs/serve.md)."""

from __future__ import annotations

import click

from embgemma_plugins.batching import DEFAULT_BATCH_TOKENS
from embgemma_plugins.maths import DIMENSIONS
from embgemma_plugins.store.layout import DEFAULT_MODEL
from embgemma_plugins.store.registry import default_variant, variants


@click.command()
@click.option("--model", default=DEFAULT_MODEL, show_default=True,
              help="Hub id, local checkpoint folder, or exported variant folder.")
@click.option("--variant", type=click.Choice(variants()),
              help=f"Model variant (default: the store's default, {default_variant()}).")
@click.option("--dimensions", type=click.Choice([str(d) for d in DIMENSIONS]), default="768",
              show_default=True, help="Dimensions of a request that names none.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback exposes the server: your choice.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port (0: any free port; the chosen one is logged).")
@click.option("--api-key", envvar="EMBGEMMA_API_KEY", show_envvar=True,
              help="Require 'Authorization: Bearer KEY' on every route but /health.")
@click.option("--max-batch-tokens", type=click.IntRange(min=1), default=DEFAULT_BATCH_TOKENS,
              show_default=True, help="Padded tokens per session run, across requests.")
@click.option("--max-wait-ms", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Longest a text waits for a batch to fill.")
@click.option("--max-queue-texts", type=click.IntRange(min=1), default=8192, show_default=True,
              help="Texts waiting at most; beyond it requests get 429 with Retry-After.")
@click.option("--max-request-texts", type=click.IntRange(min=1), default=2048,
              show_default=True, help="Texts per request at most (413 beyond).")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=16 * 1024 * 1024,
              show_default=True, help="Request body size at most (413 beyond).")
@click.option("--truncate/--no-truncate", default=False, show_default=True,
              help="OpenAI requests: cut inputs over 2,048 tokens instead of answering 413 "
              "(TEI requests choose with their own 'truncate').")
@click.option("--threads", type=click.IntRange(min=1),
              help="ONNX Runtime intra-op threads (default: one per physical core).")
@click.option("--provider", default="auto", show_default=True,
              help="ONNX Runtime provider: auto, cpu, cuda, ...")
def serve(model: str, variant: str | None, dimensions: str, host: str, port: int,
          api_key: str | None, max_batch_tokens: int, max_wait_ms: float,
          max_queue_texts: int, max_request_texts: int, max_body_bytes: int, truncate: bool,
          threads: int | None, provider: str) -> None:
    """Serve embeddings over HTTP with OpenAI's and TEI's wire formats.

    Requests without a task get the DOCUMENT prompt; send "input_type": "query" (or
    "task", or the model alias NAME:query) for queries. See docs/serve.md.

    \b
    Examples:
      embgemma serve
      embgemma serve --variant int8 --port 8080 --api-key "$KEY"
      curl localhost:8080/v1/embeddings -H 'Content-Type: application/json' \\
        -d '{"model": "embeddinggemma-300m", "input": "hello", "input_type": "query"}'
    """
    try:
        from embgemma_plugins.serve import ServeSettings
        from embgemma_plugins.serve.runner import serve as run
    except ImportError as e:
        raise click.ClickException(str(e)) from None
    from embgemma_plugins.errors import InvalidArgumentError

    try:
        settings = ServeSettings(
            model=model, variant=variant, dimensions=int(dimensions), host=host, port=port,
            api_key=api_key, max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms,
            max_queue_texts=max_queue_texts, max_request_texts=max_request_texts,
            max_body_bytes=max_body_bytes, truncate=truncate, threads=threads,
            providers=None if provider == "auto" else provider)
    except InvalidArgumentError as e:
        raise click.UsageError(str(e)) from None
    try:
        code = run(settings)
    except OSError as e:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {e.strerror or e} (is another server running "
            "there? choose another --port)") from None
    if code:
        raise click.ClickException("the model could not be loaded (see the message above)")
