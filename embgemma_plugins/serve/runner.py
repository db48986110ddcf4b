"""Run the app under uvicorn: bind, log, stop gracefully on SIGTERM, exit 0.

uvicorn stops accepting connections on SIGTERM/SIGINT, lets every request in flight
finish (the batcher keeps running until then), runs the app's shutdown (which drains
the queue), and then re-raises the signal it caught.  A no-op handler installed here
first is what it restores and re-raises into, so a graceful stop exits with status 0
instead of dying by the signal.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
from types import FrameType

import uvicorn

from embgemma_plugins.serve.app import create_app
from embgemma_plugins.serve.settings import ServeSettings

log = logging.getLogger("embgemma.serve")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (``port`` 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # now: connections wait in the backlog until uvicorn accepts
    except OSError:
        sock.close()
        raise
    return sock


def _configure_logging() -> None:
    for name in ("embgemma.serve", "embgemma.serve.access"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _ignore(sig: int, frame: FrameType | None) -> None:
    """What uvicorn re-raises the stop signal into once it has shut down gracefully."""


def serve(settings: ServeSettings) -> int:
    """Serve until SIGTERM/SIGINT; the exit status (1 if the model failed to load)."""
    _configure_logging()
    sock = bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    failed: list[bool] = []
    server: uvicorn.Server | None = None

    def fatal() -> None:
        failed.append(True)
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_fatal=fatal)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_keep_alive=30, server_header=False)
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    log.info("embgemma serve: listening on http://%s:%d (loading %s%s)", shown, port,
             settings.model, f", variant {settings.variant}" if settings.variant else "")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _ignore)
    server.run(sockets=[sock])
    log.info("embgemma serve: stopped")
    return 1 if failed else 0
