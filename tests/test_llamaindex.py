"""EmbeddingGemmaEmbedding (LlamaIndex) on the tiny model: prompts, batches, titles,
async, serialisation, pickling and a real two-process IngestionPipeline."""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys
import time

import numpy as np
import pytest
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.schema import Document, TextNode

from embgemma_plugins import EmbeddingGemmaEmbedding
from embgemma_plugins.errors import ModelNotFoundError
from tests.test_langchain import _ticks_while, spy_prompts

QUERY = "task: search result | query: "
DOC = "title: none | text: "


@pytest.fixture
def emb(tiny_model):
    return EmbeddingGemmaEmbedding(model=str(tiny_model), threads=1)


def test_query_text_and_batch_prompts_reach_the_core_exactly(emb, monkeypatch):
    seen = spy_prompts(monkeypatch, emb.client)
    emb.get_query_embedding("what is apt?")
    emb.get_text_embedding("apt installs packages")
    emb.get_text_embedding_batch(["one", "two", "three"])
    emb.get_agg_embedding_from_queries(["q1", "q2"])
    assert seen == [
        (QUERY, "what is apt?"),
        (DOC, "apt installs packages"),
        (DOC, "one"),
        (DOC, "two"),
        (DOC, "three"),
        (QUERY, "q1"),
        (QUERY, "q2"),
    ]


def test_batches_go_to_the_core_whole(emb, monkeypatch):
    calls: list[int] = []
    original = emb.client.embed_documents

    def record(texts, titles=None, long="truncate"):
        calls.append(len(texts))
        return original(texts, titles=titles, long=long)

    monkeypatch.setattr(emb.client, "embed_documents", record)
    emb.get_text_embedding_batch([f"text {i}" for i in range(300)])
    assert calls == [256, 44]  # embed_batch_size texts per call; the core batches by tokens


def test_vectors_equal_the_core_api(emb, tiny_gemma):
    texts = ["apt installs packages", "Der Paketmanager"]
    np.testing.assert_allclose(
        emb.get_text_embedding_batch(texts), tiny_gemma.embed_documents(texts), atol=1e-6
    )
    np.testing.assert_allclose(
        emb.get_query_embedding(texts[0]), tiny_gemma.embed_queries(texts[:1])[0], atol=1e-6
    )


def test_title_key_puts_node_titles_in_the_document_prompt(tiny_model, monkeypatch):
    emb = EmbeddingGemmaEmbedding(model=str(tiny_model), threads=1, title_key="title")
    seen = spy_prompts(monkeypatch, emb.client)
    nodes = [
        TextNode(text="apt installs", metadata={"title": "Apt", "lang": "en"}),
        TextNode(text="no title here"),
        Document(text="dpkg", metadata={"title": "Dpkg"}, excluded_embed_metadata_keys=["x"]),
    ]
    out = IngestionPipeline(transformations=[emb]).run(nodes=nodes)
    assert seen == [
        ("title: Apt | text: ", "lang: en\n\napt installs"),  # other metadata stays, as usual
        (DOC, "no title here"),
        ("title: Dpkg | text: ", "dpkg"),
    ]
    assert nodes[2].excluded_embed_metadata_keys == ["x"]  # the nodes are not changed
    assert all(len(n.embedding) == 768 for n in out)
    seen.clear()
    asyncio.run(emb.acall([TextNode(text="t", metadata={"title": "T"})]))
    assert seen == [("title: T | text: ", "t")]


def test_without_title_key_nodes_embed_as_llamaindex_does(emb, monkeypatch):
    seen = spy_prompts(monkeypatch, emb.client)
    emb([TextNode(text="body", metadata={"title": "T"})])
    assert seen == [(DOC, "title: T\n\nbody")]


def test_dimensions_and_model_name(tiny_model):
    emb = EmbeddingGemmaEmbedding(model=str(tiny_model), dimensions=128)
    assert len(emb.get_query_embedding("x")) == 128
    assert emb.model_name == str(tiny_model)
    assert EmbeddingGemmaEmbedding.class_name() == "EmbeddingGemmaEmbedding"


def test_validation():
    with pytest.raises(ValueError, match="dimensions"):
        EmbeddingGemmaEmbedding(dimensions=100)
    with pytest.raises(ValueError, match="unknown_field"):
        EmbeddingGemmaEmbedding(unknown_field=1)


def test_construction_opens_no_model():
    emb = EmbeddingGemmaEmbedding(model="/no/such/export")
    assert emb._lazy.model is None
    with pytest.raises(ModelNotFoundError):
        emb.get_query_embedding("x")


def test_to_dict_from_dict_and_pickle(emb):
    emb.get_query_embedding("load the model first")
    data = emb.to_dict()
    assert data["class_name"] == "EmbeddingGemmaEmbedding"
    assert data["model"] == emb.model
    assert EmbeddingGemmaEmbedding.from_dict(data) == emb
    assert EmbeddingGemmaEmbedding.from_json(emb.to_json()) == emb
    clone = pickle.loads(pickle.dumps(emb))
    assert clone == emb and clone._lazy.model is None
    np.testing.assert_allclose(
        clone.get_text_embedding("x"), emb.get_text_embedding("x"), atol=1e-6
    )


def test_async_matches_sync(emb):
    async def run():
        return (
            await emb.aget_query_embedding("q"),
            await emb.aget_text_embedding("d"),
            await emb.aget_text_embedding_batch(["a", "b"]),
        )

    query, text, batch = asyncio.run(run())
    np.testing.assert_allclose(query, emb.get_query_embedding("q"), atol=1e-6)
    np.testing.assert_allclose(text, emb.get_text_embedding("d"), atol=1e-6)
    np.testing.assert_allclose(batch, emb.get_text_embedding_batch(["a", "b"]), atol=1e-6)


def test_async_does_not_block_the_event_loop(emb, monkeypatch):
    model = emb.client
    for name in ("embed", "embed_documents"):
        original = getattr(model, name)

        def slow(*args, _original=original, **kwargs):
            time.sleep(0.5)
            return _original(*args, **kwargs)

        monkeypatch.setattr(model, name, slow)
    assert _ticks_while(lambda: emb.aget_query_embedding("x")) >= 20
    assert _ticks_while(lambda: emb.aget_text_embedding("x")) >= 20
    assert _ticks_while(lambda: emb.aget_text_embedding_batch(["x", "y"])) >= 20


def test_ingestion_pipeline_with_two_worker_processes(tiny_model):
    emb = EmbeddingGemmaEmbedding(model=str(tiny_model), threads=1, title_key="title")
    texts = [f"document number {i} about packages" for i in range(8)]
    nodes = [
        TextNode(text=t, id_=f"n{i}", metadata={"title": f"T{i}"}) for i, t in enumerate(texts)
    ]
    out = IngestionPipeline(transformations=[emb]).run(nodes=nodes, num_workers=2)
    assert sorted(n.node_id for n in out) == [f"n{i}" for i in range(8)]
    by_id = {n.node_id: n.embedding for n in out}
    expected = emb.client.embed_documents(texts, titles=[f"T{i}" for i in range(8)])
    np.testing.assert_allclose([by_id[f"n{i}"] for i in range(8)], expected, atol=1e-5)


def test_missing_llamaindex_names_the_extra():
    code = (
        "import sys; sys.modules['llama_index'] = None; sys.modules['llama_index.core'] = None\n"
        "from embgemma_plugins import EmbeddingGemmaEmbedding\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0
    assert "pip install 'embgemma-plugins[llamaindex]'" in out.stderr
