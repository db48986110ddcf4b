"""The OpenAI route through real clients: openai, LangChain, LlamaIndex, on a real server.

Every vector is compared with ``EmbeddingGemma(tiny, dimensions=d).embed(...)`` run
offline in this process: the tiny model is fp32, which is batch invariant, so the
served rows must be equal, not merely close (float JSON and base64 both carry
float32 exactly).
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from embgemma_plugins import EmbeddingGemma
from tests.serve_process import post, serve, texts_of

pytest.importorskip("starlette")


@pytest.fixture(scope="module")
def server(tiny_model: Path):
    with serve(tiny_model, "--threads", "1") as s:
        yield s


@pytest.fixture(scope="module")
def offline(tiny_model: Path):
    models: dict[int, EmbeddingGemma] = {}

    def at(dimensions: int) -> EmbeddingGemma:
        if dimensions not in models:
            models[dimensions] = EmbeddingGemma(tiny_model, dimensions=dimensions, threads=1)
        return models[dimensions]

    return at


@pytest.fixture(scope="module")
def client(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def rows(response) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The response's vectors; an explicit base64 request returns them encoded, as
    little-endian float32 (the client decodes only the base64 it asked for itself)."""
    assert [d.index for d in response.data] == list(range(len(response.data)))
    return np.array([np.frombuffer(base64.b64decode(d.embedding), "<f4")
                     if isinstance(d.embedding, str) else d.embedding
                     for d in response.data], dtype=np.float32)


@pytest.mark.parametrize("dimensions", [768, 512, 256, 128])
@pytest.mark.parametrize("encoding", [None, "base64", "float"])  # None: the client's base64
def test_openai_client_vectors_equal_offline_documents(client, offline, tiny_model, dimensions,
                                                       encoding):
    texts = texts_of(7, seed=dimensions)
    extra = {"encoding_format": encoding} if encoding else {}
    got = client.embeddings.create(model=Path(tiny_model).name, input=texts,
                                   dimensions=dimensions, **extra)
    assert isinstance(got.data[0].embedding, str) == (encoding == "base64")
    # the default is the DOCUMENT prompt
    np.testing.assert_array_equal(rows(got), offline(dimensions).embed_documents(texts))
    assert got.model == Path(tiny_model).name
    assert got.object == "list"
    tokens = sum(len(x) for x in offline(768).tokenize(
        texts, offline(768).prompt_for(task="document")).ids)
    assert got.usage.prompt_tokens == got.usage.total_tokens == tokens


@pytest.mark.parametrize(("extra", "task"), [
    ({"input_type": "query"}, "query"),
    ({"input_type": "search_document"}, "document"),
    ({"input_type": "passage"}, "document"),
    ({"task": "STS"}, "STS"),
    ({"task": "fact checking"}, "fact checking"),
    ({"task": "retrieval-query"}, "Retrieval-query"),
])
def test_task_fields_choose_the_prompt(client, offline, extra, task):
    texts = texts_of(3, seed=len(task))
    got = client.embeddings.create(model="embeddinggemma-300m", input=texts, extra_body=extra)
    np.testing.assert_array_equal(rows(got), offline(768).embed(texts, task=task))


def test_model_alias_chooses_the_task(client, offline, tiny_model):
    name = Path(tiny_model).name
    got = client.embeddings.create(model=f"{name}:query", input="what is a tiny model?",
                                   dimensions=256)
    np.testing.assert_array_equal(rows(got), offline(256).embed_queries(["what is a tiny model?"]))
    assert got.model == f"{name}:query"
    # any other model name is served by this model, with the document prompt (as TEI does)
    other = client.embeddings.create(model="text-embedding-3-small", input="a document")
    np.testing.assert_array_equal(rows(other), offline(768).embed_documents(["a document"]))


def test_titles_build_the_document_prompt(client, offline):
    texts, titles = ["body one", "body two", "body three"], ["Title A", None, ""]
    got = client.embeddings.create(model="m", input=texts, extra_body={"titles": titles})
    np.testing.assert_array_equal(rows(got), offline(768).embed_documents(texts, titles=titles))


def test_models_lists_the_model_and_its_task_aliases(client, server, tiny_model):
    ids = [m.id for m in client.models.list().data]
    assert ids[0] == str(tiny_model)
    assert f"{tiny_model}:query" in ids and f"{tiny_model}:document" in ids
    assert f"{tiny_model}:fact-checking" in ids
    assert client.models.retrieve(f"{tiny_model}:query").id == f"{tiny_model}:query"


def test_langchain_openai_embeddings(server, offline, tiny_model):
    lc = pytest.importorskip("langchain_openai")
    name = Path(tiny_model).name
    docs = lc.OpenAIEmbeddings(base_url=server.url + "/v1", api_key="unused", model=name,
                               check_embedding_ctx_length=False, max_retries=0)
    queries = lc.OpenAIEmbeddings(base_url=server.url + "/v1", api_key="unused",
                                  model=f"{name}:query", dimensions=128,
                                  check_embedding_ctx_length=False, max_retries=0)
    texts = texts_of(5, seed=3)
    np.testing.assert_array_equal(np.array(docs.embed_documents(texts), np.float32),
                                  offline(768).embed_documents(texts))
    np.testing.assert_array_equal(np.array(queries.embed_query("find the tiny model"),
                                           np.float32),
                                  offline(128).embed_queries(["find the tiny model"])[0])


def test_llamaindex_openai_like_embedding(server, offline, tiny_model):
    like = pytest.importorskip("llama_index.embeddings.openai_like")
    name = Path(tiny_model).name
    docs = like.OpenAILikeEmbedding(model_name=name, api_base=server.url + "/v1",
                                    api_key="unused", max_retries=0)
    queries = like.OpenAILikeEmbedding(model_name=f"{name}:query", api_base=server.url + "/v1",
                                       api_key="unused", dimensions=512, max_retries=0)
    texts = texts_of(4, seed=4)
    np.testing.assert_array_equal(np.array(docs.get_text_embedding_batch(texts), np.float32),
                                  offline(768).embed_documents(texts))
    np.testing.assert_array_equal(np.array(queries.get_query_embedding("a question"),
                                           np.float32),
                                  offline(512).embed_queries(["a question"])[0])


def test_plain_http_and_the_embeddings_alias(server, offline):
    got = post(server, "/embeddings", {"input": "plain curl", "encoding_format": "float"})
    assert got.status_code == 200
    body = got.json()
    assert body["data"][0]["object"] == "embedding"
    np.testing.assert_array_equal(np.array([body["data"][0]["embedding"]], np.float32),
                                  offline(768).embed_documents(["plain curl"]))
