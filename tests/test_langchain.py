"""EmbeddingGemmaEmbeddings (LangChain) on the tiny model: prompts, dims, laziness,
pickling, async, titles, and LangChain's standard test suites."""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys
import time

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from embgemma_plugins import EmbeddingGemmaEmbeddings
from embgemma_plugins.errors import InvalidArgumentError, ModelNotFoundError

QUERY = "task: search result | query: "
DOC = "title: none | text: "


@pytest.fixture
def emb(tiny_model):
    return EmbeddingGemmaEmbeddings(model=str(tiny_model), threads=1)


def spy_prompts(monkeypatch, model):
    """Record every (prompt, text) pair the core tokenises."""
    seen: list[tuple[str, str]] = []
    original = model.tokenize

    def tokenize(texts, prompts=""):
        items = list(texts)
        ps = [prompts] * len(items) if isinstance(prompts, str) else list(prompts)
        seen.extend(zip(ps, items, strict=True))
        return original(texts, prompts)

    monkeypatch.setattr(model, "tokenize", tokenize)
    return seen


class TestStandardUnit(EmbeddingsUnitTests):
    @pytest.fixture(autouse=True)
    def _tiny(self, tiny_model):
        self.tiny = str(tiny_model)

    @property
    def embeddings_class(self):
        return EmbeddingGemmaEmbeddings

    @property
    def embedding_model_params(self):
        return {"model": self.tiny, "threads": 1}


@pytest.mark.asyncio  # langchain-tests' async tests expect asyncio_mode=auto
@pytest.mark.filterwarnings("ignore:.*marked with '@pytest.mark.asyncio' but it is not an async")
class TestStandardIntegration(EmbeddingsIntegrationTests):
    @pytest.fixture(autouse=True)
    def _tiny(self, tiny_model):
        self.tiny = str(tiny_model)

    @property
    def embeddings_class(self):
        return EmbeddingGemmaEmbeddings

    @property
    def embedding_model_params(self):
        return {"model": self.tiny, "threads": 1, "dimensions": 128}


def test_query_and_document_prompts_reach_the_core_exactly(emb, monkeypatch):
    seen = spy_prompts(monkeypatch, emb.client)
    emb.embed_query("what is apt?")
    emb.embed_documents(["apt installs packages", "dpkg unpacks them"])
    emb.embed_queries(["q1", "q2"])
    assert seen == [
        (QUERY, "what is apt?"),
        (DOC, "apt installs packages"),
        (DOC, "dpkg unpacks them"),
        (QUERY, "q1"),
        (QUERY, "q2"),
    ]


def test_vectors_equal_the_core_api(emb, tiny_gemma):
    texts = ["apt installs packages", "Der Paketmanager"]
    np.testing.assert_allclose(emb.embed_documents(texts), tiny_gemma.embed_documents(texts),
                               atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(emb.embed_query(texts[0]), tiny_gemma.embed_queries(texts[:1])[0],
                               atol=1e-6)  # fmt: skip


def test_titles_reach_the_core(emb, monkeypatch):
    seen = spy_prompts(monkeypatch, emb.client)
    emb.embed_documents(["a", "b", "c"], titles=["Apt", None, "  "])
    docs = [Document(page_content="x", metadata={"title": "Dpkg"}), Document(page_content="y")]
    emb.embed_titled_documents(docs)
    emb.embed_titled_documents([Document(page_content="z", metadata={"name": "Zed"})], "name")
    assert seen == [
        ("title: Apt | text: ", "a"),
        (DOC, "b"),
        (DOC, "c"),
        ("title: Dpkg | text: ", "x"),
        (DOC, "y"),
        ("title: Zed | text: ", "z"),
    ]


def test_title_key_field_is_the_default_key(tiny_model, monkeypatch):
    emb = EmbeddingGemmaEmbeddings(model=str(tiny_model), threads=1, title_key="heading")
    seen = spy_prompts(monkeypatch, emb.client)
    emb.embed_titled_documents([Document(page_content="x", metadata={"heading": "H"})])
    assert seen == [("title: H | text: ", "x")]


def test_query_task(tiny_model, monkeypatch):
    emb = EmbeddingGemmaEmbeddings(model=str(tiny_model), query_task="question answering")
    seen = spy_prompts(monkeypatch, emb.client)
    emb.embed_query("q")
    emb.embed_documents(["d"])
    assert seen == [("task: question answering | query: ", "q"), (DOC, "d")]
    bad = EmbeddingGemmaEmbeddings(model=str(tiny_model), query_task="no such task")
    with pytest.raises(InvalidArgumentError, match="query_task: unknown task 'no such task'"):
        bad.embed_query("q")


@pytest.mark.parametrize("dims", [768, 512, 256, 128])
def test_dimensions(tiny_model, dims):
    emb = EmbeddingGemmaEmbeddings(model=str(tiny_model), dimensions=dims)
    vectors = np.array([*emb.embed_documents(["one", "two"]), emb.embed_query("three")])
    assert vectors.shape == (3, dims)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_empty_and_return_types(emb):
    assert emb.embed_documents([]) == []
    v = emb.embed_query("x")
    assert isinstance(v, list) and all(type(f) is float for f in v)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"dimensions": 300}, "dimensions"),
        ({"variant": "fp16"}, "variant"),
        ({"query_task": "document"}, "query_task"),
        ({"query_task": "Retrieval-document"}, "query_task"),
        ({"threads": 0}, "threads"),
        ({"max_length": 2}, "max_length"),
        ({"batch_tokens": 0}, "batch_tokens"),
        ({"model": " "}, "model"),
        ({"dimension": 256}, "dimension"),
    ],
)
def test_field_validation_names_the_field(kwargs, key):
    with pytest.raises(ValueError, match=rf"(?m)^{key}$"):
        EmbeddingGemmaEmbeddings(**kwargs)


def test_assignment_is_validated_and_reloads_the_model(emb):
    assert len(emb.embed_query("x")) == 768
    emb.dimensions = 256
    assert len(emb.embed_query("x")) == 256
    with pytest.raises(ValueError, match="dimensions"):
        emb.dimensions = 100


def test_construction_opens_no_model():
    emb = EmbeddingGemmaEmbeddings(model="/no/such/export", variant="int8")
    assert emb._lazy.model is None
    with pytest.raises(ModelNotFoundError):
        emb.embed_query("x")


def test_same_settings_share_one_session(tiny_model):
    a = EmbeddingGemmaEmbeddings(model=str(tiny_model), threads=1, query_task="STS")
    b = EmbeddingGemmaEmbeddings(model=str(tiny_model), threads=1)
    c = EmbeddingGemmaEmbeddings(model=str(tiny_model), threads=1, dimensions=256)
    assert a.client is b.client
    assert c.client is not a.client


def test_pickles_before_and_after_use(emb):
    assert pickle.loads(pickle.dumps(emb)) == emb
    before = emb.embed_documents(["pickled"])
    clone = pickle.loads(pickle.dumps(emb))
    assert clone == emb
    assert clone._lazy.model is None
    np.testing.assert_allclose(clone.embed_documents(["pickled"]), before, atol=1e-6)
    assert emb.model_copy(deep=True) == emb


def test_async_matches_sync(emb):
    async def both():
        return await emb.aembed_documents(["a", "b"]), await emb.aembed_query("a")

    docs, query = asyncio.run(both())
    np.testing.assert_allclose(docs, emb.embed_documents(["a", "b"]), atol=1e-6)
    np.testing.assert_allclose(query, emb.embed_query("a"), atol=1e-6)


def _ticks_while(coro_factory):
    """How many 10 ms ticks another task got while the coroutine ran."""

    async def run():
        ticks = 0
        done = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not done.is_set():
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        await coro_factory()
        done.set()
        await task
        return ticks

    return asyncio.run(run())


def test_async_does_not_block_the_event_loop(emb, monkeypatch):
    model = emb.client
    for name in ("embed", "embed_documents"):
        original = getattr(model, name)

        def slow(*args, _original=original, **kwargs):
            time.sleep(0.5)  # a long embedding call, as the real model on a big batch
            return _original(*args, **kwargs)

        monkeypatch.setattr(model, name, slow)
    assert _ticks_while(lambda: emb.aembed_documents(["x"] * 8)) >= 20
    assert _ticks_while(lambda: emb.aembed_query("x")) >= 20


def test_missing_langchain_names_the_extra():
    code = (
        "import sys; sys.modules['langchain_core'] = None\n"
        "from embgemma_plugins import EmbeddingGemmaEmbeddings\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0
    assert "ImportError" in out.stderr
    assert "pip install 'embgemma-plugins[langchain]'" in out.stderr


def test_explicit_prompt_strings_reach_the_core(tiny_model, monkeypatch):
    emb = EmbeddingGemmaEmbeddings(model=str(tiny_model), threads=1,
                                   query_prompt="task: fact checking | query: ",
                                   document_prompt="title: none | text: evidence: ")
    seen = spy_prompts(monkeypatch, emb.client)
    emb.embed_query("q")
    emb.embed_documents(["d", "e"], titles=["T", None])
    emb.embed_documents(["f"])
    assert seen == [
        ("task: fact checking | query: ", "q"),
        ("title: T | text: evidence: ", "d"),  # a title replaces the prompt's "title: none"
        ("title: none | text: evidence: ", "e"),
        ("title: none | text: evidence: ", "f"),
    ]
    bare = EmbeddingGemmaEmbeddings(model=str(tiny_model), threads=1, document_prompt="")
    with pytest.raises(InvalidArgumentError, match="has no 'title: none' slot"):
        bare.embed_documents(["d"], titles=["T"])


def test_batch_size_is_texts_per_call_to_the_model(tiny_model, monkeypatch):
    emb = EmbeddingGemmaEmbeddings(model=str(tiny_model), threads=1, batch_size=4)
    seen = spy_prompts(monkeypatch, emb.client)
    calls: list[int] = []
    original = emb.client.embed_tokens
    monkeypatch.setattr(emb.client, "embed_tokens", lambda enc: calls.append(len(enc.ids))
                        or original(enc))
    texts = [f"text number {i}" for i in range(10)]
    docs = emb.embed_documents(texts)
    queries = emb.embed_queries(texts)
    assert calls == [4, 4, 2, 4, 4, 2]
    assert seen == [(DOC, t) for t in texts] + [(QUERY, t) for t in texts]
    whole = EmbeddingGemmaEmbeddings(model=str(tiny_model), threads=1)
    np.testing.assert_allclose(docs, whole.embed_documents(texts), atol=1e-6)
    np.testing.assert_allclose(queries, whole.embed_queries(texts), atol=1e-6)


def test_show_progress_draws_a_bar_per_batch(tiny_model, capsys):
    emb = EmbeddingGemmaEmbeddings(model=str(tiny_model), threads=1, batch_size=3,
                                   show_progress=True)
    assert len(emb.embed_documents([f"t{i}" for i in range(7)])) == 7
    err = capsys.readouterr().err
    assert "Embedding documents" in err and "7/7" in err
    quiet = EmbeddingGemmaEmbeddings(model=str(tiny_model), threads=1)
    quiet.embed_documents(["t"])
    assert capsys.readouterr().err == ""


def _store_texts(store):
    return {d["text"]: d["vector"] for d in store.store.values()}


def test_titles_in_one_call_into_a_real_vector_store(tiny_model, tiny_gemma):
    from langchain_core.vectorstores import InMemoryVectorStore

    emb = EmbeddingGemmaEmbeddings(model=str(tiny_model), threads=1, title_key="name")
    docs = [Document(page_content="apt installs packages", metadata={"name": "apt"}),
            Document(page_content="dpkg unpacks them"),
            Document(page_content="apt installs packages", metadata={"name": "apt-get"})]
    store = emb.build_store(InMemoryVectorStore, docs)
    texts = [d.page_content for d in docs]
    expected = tiny_gemma.embed_documents(texts, titles=["apt", None, "apt-get"])
    stored = [d["vector"] for d in store.store.values()]
    np.testing.assert_allclose(stored, expected, atol=1e-6)
    ids = emb.add_documents(store, [Document(page_content="gpg signs", metadata={"name": "G"})])
    np.testing.assert_allclose(store.store[ids[0]]["vector"],
                               tiny_gemma.embed_documents(["gpg signs"], titles=["G"])[0],
                               atol=1e-6)
    hit = store.similarity_search_by_vector(expected[2], k=1)[0]
    assert hit.metadata == {"name": "apt-get"}
    # outside the helpers, nothing is left waiting: plain texts get "title: none"
    np.testing.assert_allclose(emb.embed_documents(["gpg signs"]),
                               tiny_gemma.embed_documents(["gpg signs"]), atol=1e-6)


def test_titles_for_serves_any_caller_and_warns_about_changed_texts(tiny_model, monkeypatch):
    from langchain_core.vectorstores import InMemoryVectorStore

    emb = EmbeddingGemmaEmbeddings(model=str(tiny_model), threads=1)
    docs = [Document(page_content="x", metadata={"title": "X"})]
    store = InMemoryVectorStore(emb)
    seen = spy_prompts(monkeypatch, emb.client)
    with emb.titles_for(docs) as used:
        asyncio.run(store.aadd_documents(docs))  # the async path, in a worker thread
    assert seen == [("title: X | text: ", "x")] and used.missed == 0

    class Stripping(InMemoryVectorStore):
        def add_documents(self, documents, **kwargs):
            changed = [Document(page_content=d.page_content.upper()) for d in documents]
            return super().add_documents(changed, **kwargs)

    with pytest.warns(UserWarning, match="1 of 1 documents did not reach embed_documents"):
        emb.add_documents(Stripping(emb), docs)
    seen.clear()
    emb.embed_documents(["x"])
    assert seen == [(DOC, "x")]
