"""``embgemma serve`` on the real int8 variant, through the openai client and TEI's /embed.

Heavy (the real model; it builds the int8 variant into the store on first use): run
under ``flock /tmp/heavy.lock``.  Served vectors are compared with the offline
``EmbeddingGemma(..., variant="int8")``: int8's dynamic activation quantisation takes
its scales from the whole batch, so a text's int8 vector moves slightly with its batch
mates (making int8 batch invariant is another issue's work); the comparison is by
cosine, with a bar far above what a mixed-up row (another text's vector) could reach.
"""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from integration_tests.conftest import REAL_MODEL
from tests.serve_process import serve

pytest.importorskip("starlette")
openai = pytest.importorskip("openai")

#: int8 rows batched with other texts vs alone: cosine >= this (measured: docs/serve.md)
INT8_BAR = 0.999


@pytest.fixture(scope="module")
def offline(real_checkpoint):  # type: ignore[no-untyped-def]
    from embgemma_plugins import EmbeddingGemma

    return {d: EmbeddingGemma(REAL_MODEL, variant="int8", dimensions=d) for d in (768, 256)}


@pytest.fixture(scope="module")
def server(offline):  # type: ignore[no-untyped-def]
    with serve(REAL_MODEL, "--variant", "int8", "--max-wait-ms", "20") as s:
        yield s


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[str]]:
    from embgemma_plugins.bench import corpus as bench_corpus

    return bench_corpus.documents()[::40], bench_corpus.queries()[::10]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_openai_client_on_the_real_int8_variant(server, offline, corpus):
    docs, queries = corpus
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    got = client.embeddings.create(model="embeddinggemma-300m", input=docs)
    served = np.array([d.embedding for d in got.data], np.float32)
    low = cosines(served, offline[768].embed_documents(docs)).min()
    assert low >= INT8_BAR, low
    q = client.embeddings.create(model="embeddinggemma-300m:query", input=queries,
                                 dimensions=256)
    served_q = np.array([d.embedding for d in q.data], np.float32)
    low = cosines(served_q, offline[256].embed_queries(queries)).min()
    assert low >= INT8_BAR, low
    assert np.allclose(np.linalg.norm(served_q, axis=1), 1, atol=1e-5)
    tokens = sum(len(x) for x in offline[768].tokenize(
        docs, offline[768].prompt_for(task="document")).ids)
    assert got.usage.prompt_tokens == tokens


def test_concurrent_tei_requests_get_their_own_rows(server, offline, corpus):
    docs, queries = corpus
    requests = [(docs[i:i + 3], "document") for i in range(0, len(docs), 3)] + [
        ([q], "query") for q in queries]

    async def send() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=600) as c:
            return await asyncio.gather(*(c.post("/embed", json={
                "inputs": texts, "prompt_name": task}) for texts, task in requests))

    for (texts, task), response in zip(requests, asyncio.run(send()), strict=True):
        assert response.status_code == 200
        want = offline[768].embed(texts, task=task)
        low = cosines(np.array(response.json(), np.float32), want).min()
        assert low >= INT8_BAR, low
