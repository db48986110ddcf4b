"""Operations: concurrency without mix-ups, batching across requests, metrics that count
what was sent, a graceful SIGTERM, /health before the model is loaded, the access log."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import signal
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from embgemma_plugins import EmbeddingGemma
from embgemma_plugins.maths import DIMENSIONS
from tests.serve_process import ServerProcess, post, serve, texts_of

pytest.importorskip("starlette")


@pytest.fixture(scope="module")
def offline(tiny_model: Path):
    gemma = EmbeddingGemma(tiny_model, threads=1)
    return {d: EmbeddingGemma(tiny_model, dimensions=d, threads=1) for d in DIMENSIONS} | {
        "tokens": gemma}


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text exposition."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    key = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def plan(n: int) -> list[dict]:
    """``n`` different requests: routes, tasks, dimensions and sizes all vary."""
    rng = random.Random(7)
    out = []
    for i in range(n):
        texts = texts_of(rng.randint(1, 5), seed=100 + i)
        task = rng.choice(["document", "query", "STS"])
        dims = rng.choice(DIMENSIONS)
        if i % 2:
            out.append({"path": "/embed", "task": task, "dims": dims, "texts": texts,
                        "body": {"inputs": texts, "prompt_name": task, "dimensions": dims}})
        else:
            out.append({"path": "/v1/embeddings", "task": task, "dims": dims, "texts": texts,
                        "body": {"input": texts, "task": task, "dimensions": dims,
                                 "encoding_format": "float"}})
    return out


async def send_all(url: str, requests: list[dict]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(requests))
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        return await asyncio.gather(*(client.post(r["path"], json=r["body"]) for r in requests))


def same(got: np.ndarray, want: np.ndarray) -> None:
    """Rows batched with other requests' rows: equal to the offline ones up to float32
    rounding (fp32 kernels round differently at other batch shapes: measured <= 6e-8)."""
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def vectors(response: httpx.Response) -> np.ndarray:
    body = response.json()
    rows = body if isinstance(body, list) else [d["embedding"] for d in body["data"]]
    return np.array(rows, dtype=np.float32)


def test_64_concurrent_requests_get_their_own_rows_and_metrics_count_them(tiny_model, offline):
    requests = plan(64)
    with serve(tiny_model, "--max-wait-ms", "100") as s:
        responses = asyncio.run(send_all(s.url, requests))
        for r, got in zip(requests, responses, strict=True):
            assert got.status_code == 200, got.text
            same(vectors(got), offline[r["dims"]].embed(r["texts"], task=r["task"]))
        text = httpx.get(s.url + "/metrics", timeout=30).text
        log = s.log
    n_texts = sum(len(r["texts"]) for r in requests)
    tokens = sum(len(x) for r in requests for x in offline["tokens"].tokenize(
        r["texts"], offline["tokens"].prompt_for(task=r["task"])).ids)
    assert metric(text, "embgemma_requests_total", route="/v1/embeddings", status="200") == 32
    assert metric(text, "embgemma_requests_total", route="/embed", status="200") == 32
    assert metric(text, "embgemma_texts_embedded_total") == n_texts
    assert metric(text, "embgemma_tokens_embedded_total") == tokens
    assert metric(text, "embgemma_request_errors_total", route="/embed", status="200") == 0
    batches = metric(text, "embgemma_batch_size_count")
    assert metric(text, "embgemma_batch_size_sum") == n_texts
    assert 1 <= batches < 64, "requests were not batched together"
    assert metric(text, "embgemma_request_duration_seconds_count", route="/embed") == 32
    assert metric(text, "embgemma_queue_texts") == 0
    assert metric(text, "embgemma_model_loaded") == 1
    # one structured access-log line per request
    lines = [json.loads(ln) for ln in log.splitlines() if ln.startswith('{"ts"')]
    assert len(lines) == 64 and {ln["status"] for ln in lines} == {200}
    assert sum(ln["texts"] for ln in lines) == n_texts


def test_errors_are_counted_by_route_and_status(tiny_model):
    with serve(tiny_model, "--threads", "1") as s:
        post(s, "/v1/embeddings", {"input": []})
        post(s, "/v1/embeddings", {"input": []})
        post(s, "/embed", {"inputs": "x", "dimensions": 3})
        text = httpx.get(s.url + "/metrics", timeout=30).text
    assert metric(text, "embgemma_request_errors_total", route="/v1/embeddings",
                  status="400") == 2
    assert metric(text, "embgemma_requests_total", route="/embed", status="400") == 1
    assert metric(text, "embgemma_texts_embedded_total") == 0


def test_sigterm_finishes_accepted_requests_and_exits_0(tiny_model, offline):
    # texts wait up to 2 s for a batch to fill, so every request is still queued at SIGTERM
    s = serve(tiny_model, "--threads", "1", "--max-wait-ms", "2000", "--max-batch-tokens",
              "1000000")
    requests = plan(24)
    n_texts = sum(len(r["texts"]) for r in requests)

    async def run() -> list[httpx.Response]:
        sending = asyncio.create_task(send_all(s.url, requests))
        async with httpx.AsyncClient(timeout=30) as probe:
            while metric((await probe.get(s.url + "/metrics")).text,
                         "embgemma_queue_texts") < n_texts:
                await asyncio.sleep(0.01)
        s.proc.send_signal(signal.SIGTERM)
        return await sending

    try:
        responses = asyncio.run(run())
        assert s.proc.wait(60) == 0, s.log
    finally:
        s.stop()
    for r, got in zip(requests, responses, strict=True):
        assert got.status_code == 200
        same(vectors(got), offline[r["dims"]].embed(r["texts"], task=r["task"]))
    with pytest.raises(httpx.ConnectError):  # and it is no longer accepting
        httpx.get(s.url + "/health", timeout=5)


def test_health_is_503_until_the_model_is_loaded(tiny_checkpoint, tiny_model, tmp_path,
                                                 monkeypatch):
    """The server listens at once and loads in the background.  Here its load waits, as
    a real one does, for another process that is building the variant (it holds the
    store's build lock); /health says 503 until that build lands and the model loads."""
    from filelock import FileLock

    from embgemma_plugins.store.layout import variant_dir

    monkeypatch.setenv("EMBGEMMA_HOME", str(tmp_path / "store"))
    target = variant_dir(tiny_checkpoint, "fp32")
    target.parent.mkdir(parents=True)
    build = FileLock(str(target) + ".lock")
    build.acquire()
    try:
        with ServerProcess("--model", str(tiny_checkpoint), "--variant", "fp32", "--threads",
                           "1", wait_healthy=False) as s:
            for _ in range(5):
                early = httpx.get(s.url + "/health", timeout=30)
                assert early.status_code == 503
                assert early.json() == {"error": "the model is loading; retry shortly",
                                        "error_type": "unhealthy"}
                time.sleep(0.1)
            busy = post(s, "/v1/embeddings", {"input": "too early"})
            assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
            assert busy.json()["error"]["code"] == "model_loading"
            shutil.copytree(tiny_model, target)  # the other process's build lands
            build.release()
            s.wait_healthy(120)
            assert post(s, "/v1/embeddings", {"input": "now"}).status_code == 200
    finally:
        build.release()


def test_a_model_that_cannot_load_ends_the_server_with_status_1(tmp_path):
    s = ServerProcess("--model", str(tmp_path / "missing"), wait_healthy=False)
    start = time.monotonic()
    code = s.proc.wait(120)
    assert code == 1 and time.monotonic() - start < 120
    assert "could not be loaded" in s.log and "missing" in s.log


def test_binds_loopback_by_default(tiny_model):
    with serve(tiny_model, "--threads", "1") as s:
        assert s.url.startswith("http://127.0.0.1:")
