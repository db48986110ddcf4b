"""The LangChain TextSplitter and LlamaIndex NodeParser on the tiny model's tokenizer, and
the adapters' long= option: chunks budgeted against exactly what gets embedded."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from langchain_core.documents import Document as LCDocument
from llama_index.core.schema import Document as LIDocument
from llama_index.core.schema import MetadataMode

from embgemma_plugins import (
    EmbeddingGemmaEmbedding,
    EmbeddingGemmaEmbeddings,
    EmbeddingGemmaNodeParser,
    EmbeddingGemmaTextSplitter,
)
from embgemma_plugins.errors import InvalidArgumentError
from tests.test_late import long_text

TITLE = "The Zen of Python, by Tim Peters"


@pytest.fixture(scope="module")
def count(tiny_gemma):  # type: ignore[no-untyped-def]
    return lambda prompt, text: int(tiny_gemma.tokenize([text], prompt).lengths[0])


def test_langchain_splitter_gives_exact_offsets_within_the_token_budget(tiny_model, tiny_gemma,
                                                                        count):
    emb = EmbeddingGemmaEmbeddings(model=str(tiny_model), title_key="title")
    splitter = EmbeddingGemmaTextSplitter.from_embeddings(emb, chunk_size=64, chunk_overlap=8)
    texts = [long_text(30), long_text(30) + long_text(30)]  # repeated passages
    docs = [LCDocument(texts[0], metadata={"title": TITLE, "n": 1}),
            LCDocument(texts[1], metadata={"n": 2})]
    chunks = splitter.split_documents(docs)
    for source, text in zip(docs, texts, strict=True):
        mine = [c for c in chunks if c.metadata["n"] == source.metadata["n"]]
        assert mine[0].metadata["start_index"] == 0 and mine[-1].metadata["end_index"] == len(text)
        prompt = tiny_gemma.prompts.document_prompt(source.metadata.get("title"))
        for i, c in enumerate(mine):
            assert c.metadata["chunk"] == i
            assert c.page_content == text[c.metadata["start_index"] : c.metadata["end_index"]]
            assert count(prompt, c.page_content) <= 64
    expected = tiny_gemma.chunk([texts[1]], 64, 8)[0]
    assert splitter.split_text(texts[1]) == [c.text for c in expected]
    assert splitter._length_function(texts[0]) == count("", texts[0])
    clone = pickle.loads(pickle.dumps(splitter))
    assert clone.split_text(texts[0]) == splitter.split_text(texts[0])
    vectors = emb.embed_titled_documents(chunks)  # the documented way to embed them
    assert np.allclose(np.linalg.norm(np.array(vectors), axis=1), 1, atol=1e-5)


def test_small_chunk_sizes_default_to_half_a_chunk_of_overlap(tiny_model, tiny_gemma):
    splitter = EmbeddingGemmaTextSplitter(chunk_size=40, model=str(tiny_model))
    parser = EmbeddingGemmaNodeParser(chunk_size=40, model=str(tiny_model))
    assert (splitter._chunk_overlap, parser.chunk_overlap) == (20, 20)
    assert EmbeddingGemmaNodeParser(model=str(tiny_model)).chunk_overlap == 64
    text = long_text(10)
    expected = [c.text for c in tiny_gemma.chunk([text], 40, 20)[0]]
    assert splitter.split_text(text) == expected
    nodes = parser.get_nodes_from_documents([LIDocument(text=text)])
    assert [n.get_content(metadata_mode=MetadataMode.NONE) for n in nodes] == expected


def test_llamaindex_parser_budgets_what_the_embedding_embeds(tiny_model, tiny_gemma, count):
    embed_model = EmbeddingGemmaEmbedding(model=str(tiny_model), title_key="title")
    parser = EmbeddingGemmaNodeParser.from_embedding(embed_model, chunk_size=80, chunk_overlap=8)
    text = long_text(25) * 2  # the second half repeats the first
    doc = LIDocument(text=text, metadata={"title": TITLE, "source": "zen.txt"})
    nodes = parser.get_nodes_from_documents([doc])
    assert len(nodes) > 3
    prompt = tiny_gemma.prompts.document_prompt(TITLE)
    for node, titled in zip(nodes, embed_model._titled(nodes), strict=True):
        assert node.text == text[node.start_char_idx : node.end_char_idx]
        assert titled.doc_title == TITLE and "source: zen.txt" in titled.content
        assert count(prompt, titled.content) <= 80
    assert nodes[0].start_char_idx == 0 and nodes[-1].end_char_idx == len(text)
    starts = [n.start_char_idx for n in nodes]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert all(n.ref_doc_id == doc.doc_id for n in nodes)
    bare = EmbeddingGemmaNodeParser(model=str(tiny_model), chunk_size=80, chunk_overlap=8,
                                    include_metadata=False)  # fmt: skip
    plain = bare.get_nodes_from_documents([LIDocument(text=text)])
    assert [n.get_content(MetadataMode.NONE) for n in plain] == [
        c.text for c in tiny_gemma.chunk([text], 80, 8)[0]]
    assert pickle.loads(pickle.dumps(parser)).chunk_size == 80


def test_adapters_take_the_long_policy(tiny_model):
    from embgemma_plugins import EmbeddingGemma

    texts = [long_text(2), long_text(40)]
    core = EmbeddingGemma(tiny_model, threads=1, max_length=96)
    expected = core.embed_documents(texts, long="mean")
    lc = EmbeddingGemmaEmbeddings(model=str(tiny_model), max_length=96, long="mean")
    li = EmbeddingGemmaEmbedding(model=str(tiny_model), max_length=96, long="mean")
    assert np.abs(np.array(lc.embed_documents(texts)) - expected).max() < 1e-6
    assert np.abs(np.array(li.get_text_embedding_batch(texts)) - expected).max() < 1e-6
    with pytest.raises(InvalidArgumentError, match=r"embeddings\.long: long must be one of"):
        EmbeddingGemmaEmbeddings.from_config({"model": str(tiny_model), "long": "split"})
    strict = EmbeddingGemmaEmbeddings(model=str(tiny_model), max_length=96, long="error")
    with pytest.raises(InvalidArgumentError, match=r"texts\[1\] is \d+ tokens"):
        strict.embed_documents(texts)
