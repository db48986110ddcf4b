"""The TEI routes: /embed (and the root), /tokenize, /info, /health, through TEI's clients.

huggingface_hub's ``InferenceClient(model=URL)`` is the client TEI documents; LlamaIndex's
``TextEmbeddingsInference`` posts to ``/embed``.  Vectors are compared with the offline
path exactly (fp32 tiny model).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embgemma_plugins import EmbeddingGemma
from embgemma_plugins.model import MAX_LENGTH
from tests.serve_process import post, serve, texts_of

pytest.importorskip("starlette")


@pytest.fixture(scope="module")
def server(tiny_model: Path):
    with serve(tiny_model, "--threads", "1", "--dimensions", "256") as s:
        yield s


@pytest.fixture(scope="module")
def gemma(tiny_model: Path) -> EmbeddingGemma:
    return EmbeddingGemma(tiny_model, threads=1)


def as_rows(body: object) -> np.ndarray:
    return np.array(body, dtype=np.float32)


def cut(vectors: np.ndarray, d: int) -> np.ndarray:
    from embgemma_plugins.maths import truncate

    return truncate(vectors, d)


def test_embed_defaults_to_the_document_prompt_at_the_server_dimensions(server, gemma):
    texts = texts_of(6, seed=11)
    got = post(server, "/embed", {"inputs": texts})
    assert got.status_code == 200, got.text
    # --dimensions 256: a request that names none gets 256
    np.testing.assert_array_equal(as_rows(got.json()), cut(gemma.embed_documents(texts), 256))
    single = post(server, "/embed", {"inputs": "one string"}).json()
    assert len(single) == 1 and len(single[0]) == 256


@pytest.mark.parametrize(("prompt_name", "task"), [("query", "query"), ("STS", "STS"),
                                                    ("Retrieval-document", "document")])
def test_embed_prompt_name_and_dimensions(server, gemma, prompt_name, task):
    texts = texts_of(3, seed=5)
    got = post(server, "/embed", {"inputs": texts, "prompt_name": prompt_name,
                                  "dimensions": 512, "normalize": True})
    np.testing.assert_array_equal(as_rows(got.json()), cut(gemma.embed(texts, task=task), 512))


def test_embed_truncates_only_when_asked(server, gemma):
    long = "token " * (MAX_LENGTH + 100)
    refused = post(server, "/embed", {"inputs": ["short", long]})
    assert refused.status_code == 413
    assert refused.json()["error_type"] == "validation"
    assert "inputs[1] is " in refused.json()["error"]
    got = post(server, "/embed", {"inputs": ["short", long], "truncate": True})
    assert got.status_code == 200
    # offline embed cuts to 2,048 tokens, keeping EOS last: the same vector
    np.testing.assert_array_equal(as_rows(got.json()),
                                  cut(gemma.embed_documents(["short", long]), 256))


def test_embed_url_prompt_name_and_the_no_prompt_task(server, gemma):
    got = post(server, "/embed?prompt_name=query", {"inputs": ["a question"]})
    np.testing.assert_array_equal(as_rows(got.json()), cut(gemma.embed_queries(["a question"]),
                                                           256))
    raw = post(server, "/embed", {"inputs": ["no prompt"], "prompt_name": "none"})
    np.testing.assert_array_equal(as_rows(raw.json()), cut(gemma.embed(["no prompt"],
                                                                       prompt=""), 256))
    clash = post(server, "/embed?prompt_name=query", {"inputs": ["x"], "prompt_name": "STS"})
    assert clash.status_code == 400 and "conflicting tasks" in clash.json()["error"]


def test_tokenize_lists_the_ids_that_are_embedded(server, gemma):
    texts = ["hello wörld", "a <bos> typed in text"]
    got = post(server, "/tokenize", {"inputs": texts, "prompt_name": "query"})
    assert got.status_code == 200
    listed = got.json()
    encoded = gemma.tokenize(texts, gemma.prompt_for(task="query"))
    for tokens, ids, text in zip(listed, encoded.ids, texts, strict=True):
        assert [t["id"] for t in tokens] == ids.tolist()
        assert tokens[0]["special"] and tokens[-1]["special"]
        full = gemma.prompt_for(task="query") + text
        inner = tokens[1:-1]
        assert not any(t["special"] for t in inner)
        # spans are character offsets into prompt + text, covering it in order
        assert inner[0]["start"] == 0 and inner[-1]["stop"] == len(full)
        assert "".join(full[t["start"]:t["stop"]] for t in inner) == full
    bare = post(server, "/tokenize", {"inputs": "hello", "add_special_tokens": False}).json()
    assert [t["id"] for t in bare[0]] == gemma.tokenize(
        ["hello"], gemma.prompt_for(task="document")).ids[0][1:-1].tolist()


def test_info_and_health(server, tiny_model):
    info = httpx_get(server, "/info")
    assert info.status_code == 200
    body = info.json()
    assert body["model_id"] == str(tiny_model)
    assert body["max_input_length"] == MAX_LENGTH
    assert body["model_type"] == {"embedding": {"pooling": "mean"}}
    assert body["dimensions"] == 256 and "query" in body["prompt_names"]
    assert body["max_client_batch_size"] == 2048 and body["auto_truncate"] is False
    assert httpx_get(server, "/health").status_code == 200


CLIENT = """
import json, sys
from huggingface_hub import InferenceClient
client = InferenceClient(model=sys.argv[1])
texts = json.loads(sys.argv[2])
print(json.dumps([client.feature_extraction(texts).tolist(),
                  client.feature_extraction(texts[0], prompt_name="query").tolist()]))
"""


def test_huggingface_hub_inference_client(server, gemma):
    """TEI's documented Python client, pointed at the server's URL (it posts to the root).
    In its own process: HF_HUB_OFFLINE, set for the tests, also blocks loopback URLs."""
    texts = texts_of(4, seed=21)
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    done = subprocess.run([sys.executable, "-c", CLIENT, server.url, json.dumps(texts)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    documents, query = json.loads(done.stdout)
    np.testing.assert_array_equal(as_rows(documents), cut(gemma.embed_documents(texts), 256))
    np.testing.assert_array_equal(as_rows(query), cut(gemma.embed_queries(texts[:1]), 256))


def test_llamaindex_text_embeddings_inference(server, gemma):
    tei = pytest.importorskip("llama_index.embeddings.text_embeddings_inference")
    texts = texts_of(3, seed=8)
    plain = tei.TextEmbeddingsInference(model_name="embeddinggemma-300m", base_url=server.url)
    np.testing.assert_array_equal(as_rows(plain.get_text_embedding_batch(texts)),
                                  cut(gemma.embed_documents(texts), 256))
    # queries and documents from one instance: the client adds the model's prompts itself
    # (LlamaIndex joins instruction and text with one space), the server adds none
    both = tei.TextEmbeddingsInference(
        model_name="embeddinggemma-300m", base_url=server.url, endpoint="/embed?prompt_name=none",
        query_instruction=gemma.prompt_for(task="query").rstrip(),
        text_instruction=gemma.prompt_for(task="document").rstrip())
    np.testing.assert_array_equal(as_rows([both.get_query_embedding("find it")]),
                                  cut(gemma.embed_queries(["find it"]), 256))
    np.testing.assert_array_equal(as_rows(both.get_text_embedding_batch(texts)),
                                  cut(gemma.embed_documents(texts), 256))


def httpx_get(server, path: str):  # type: ignore[no-untyped-def]
    import httpx

    return httpx.get(server.url + path, timeout=30)
