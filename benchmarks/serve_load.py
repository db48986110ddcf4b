"""A bounded closed-loop HTTP load generator for ``benchmarks.serve``.

Each of ``clients`` connections sends its requests one after the other (keep-alive,
HTTP/1.1) and records each latency.  It is a few lines of asyncio streams rather than
an HTTP library, so the load generator takes as little of the two cores from the
server as possible: it checks the status and reads the body without parsing it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LevelResult:
    clients: int
    requests: int = 0
    texts: int = 0
    tokens: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    body: bytes
    texts: int
    tokens: int


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str,
                    path: str, body: bytes) -> int:
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    writer.write(head + body)
    await writer.drain()
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def _client(url: str, path: str, work: list[Request], result: LevelResult) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for req in work:
            start = time.perf_counter()
            try:
                status = await _exchange(reader, writer, f"{host}:{port}", path, req.body)
            except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
                status = 0
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
            result.latencies_ms.append((time.perf_counter() - start) * 1000)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            result.requests += 1
            if status == 200:
                result.texts += req.texts
                result.tokens += req.tokens
            else:
                result.errors += 1
    finally:
        writer.close()


def run_level(url: str, path: str, per_client: list[list[Request]]) -> LevelResult:
    """Run every client's requests concurrently; wall time from first send to last answer."""
    result = LevelResult(clients=len(per_client))

    async def main() -> None:
        start = time.perf_counter()
        await asyncio.gather(*(_client(url, path, work, result) for work in per_client))
        result.seconds = time.perf_counter() - start

    asyncio.run(main())
    return result
