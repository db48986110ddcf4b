"""``embgemma serve`` as a user runs it: a real process on a free loopback port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import httpx

CLI = [sys.executable, "-m", "embgemma_plugins.cli.main"]
LISTENING = re.compile(r"listening on (http://\S+)")


class ServerProcess:
    """Start ``embgemma serve ARGS --port 0``; its URL, log lines, and a graceful stop."""

    def __init__(self, *args: str, env: dict[str, str] | None = None,
                 wait_healthy: bool = True, timeout: float = 300) -> None:
        self.proc = subprocess.Popen(
            [*CLI, "serve", *args, "--port", "0"], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self._bound = threading.Event()
        self.url = ""
        threading.Thread(target=self._read, daemon=True).start()
        if not self._bound.wait(timeout) or not self.url:
            self.stop()
            raise RuntimeError(f"the server did not start:\n{self.log}")
        if wait_healthy:
            self.wait_healthy(timeout)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            found = LISTENING.search(line)
            if found and not self.url:
                self.url = found.group(1)
                self._bound.set()
        self._bound.set()

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_healthy(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}):\n{self.log}")
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the server did not become healthy:\n{self.log}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Send ``sig`` and wait; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(model: object, *options: str, **kwargs: object) -> ServerProcess:
    """A server of ``model`` (a folder or hub id) with ``options``."""
    return ServerProcess("--model", str(model), *options, **kwargs)  # type: ignore[arg-type]


def post(server: ServerProcess, path: str, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60, **kwargs)  # type: ignore[arg-type]


def texts_of(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct texts of varied length (1 to ~60 words)."""
    words = ["embedding", "server", "batch", "token", "vector", "query", "document", "prompt",
             "model", "gemma", "latency", "cosine", "onnx", "runtime", "queue", "client"]
    out = []
    for i in range(n):
        k = 1 + (i * 7 + seed * 13) % 60
        out.append(f"text {seed}-{i}: " + " ".join(words[(i + j) % len(words)] for j in range(k)))
    return out
