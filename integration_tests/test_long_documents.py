"""Long documents on the real weights: the token_states output against sentence-transformers,
and the long-document retrieval set (docs/long-documents.md) on its shorter pages.

The late-chunking tests need variants built with the ``token_states`` output (every recipe
lists it); a store holding variants built before skips them, saying how to rebuild.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from benchmarks.long_documents import load, ndcg
from integration_tests.conftest import REAL_MODEL
from tests.conftest import cosines


def with_token_states(variant: str):  # type: ignore[no-untyped-def]
    from embgemma_plugins import EmbeddingGemma
    from embgemma_plugins.session import TOKEN_STATES

    model = EmbeddingGemma(REAL_MODEL, variant=variant)
    if TOKEN_STATES not in [o.name for o in model.session.get_outputs()]:
        pytest.skip(f"the store's {variant} variant predates the token_states output; "
                    f"rebuild it: embgemma export --variant {variant}")
    return model


@pytest.fixture(scope="module")
def fp32(real_checkpoint):  # type: ignore[no-untyped-def]
    return with_token_states("fp32")


@pytest.fixture(scope="module")
def int8(real_checkpoint):  # type: ignore[no-untyped-def]
    return with_token_states("int8")


def test_token_states_are_sentence_transformers_tokens_through_its_dense_head(fp32, real_st):
    import torch

    from embgemma_plugins.session import TOKEN_STATES

    docs, _ = load()
    texts = ["title: none | text: " + d["text"][:6000] for d in docs[:3]]
    for text in texts:
        ids = fp32.tokenizer.encode([text], 2048).ids[0][None, :]
        (states,) = fp32.session.run([TOKEN_STATES], {"input_ids": ids,
                                                      "attention_mask": np.ones_like(ids)})
        with torch.no_grad():
            tokens = real_st[0](real_st.tokenize([text]))["token_embeddings"][0]
            ref = real_st[3](real_st[2]({"sentence_embedding": tokens}))["sentence_embedding"]
        assert cosines(states[0], ref.numpy()).min() >= 0.999
        whole = states[0].mean(axis=0, keepdims=True)
        assert cosines(whole, fp32.embed_tokens([ids[0]]))[0] >= 0.99999


def test_whole_pages_on_the_shorter_pages(int8):
    """Pages of 2,000 to 4,000 tokens (16, kept few for CI) and the
    queries taken from past their first 2,048 tokens (17): cut at the window, the page
    cannot match them; mean and late see all of it."""
    docs, queries = load()
    docs = [d for d in docs if d["tokens"] <= 4000]
    index = {d["id"]: i for i, d in enumerate(docs)}
    prompt = int8.prompt_for("document")
    late_queries = [q for q in queries if q["relevant"] in index and int(int8.tokenize(
        [docs[index[q["relevant"]]]["text"][: q["at"]]], prompt).lengths[0]) > 2048]
    assert len(late_queries) >= 15
    texts = [d["text"] for d in docs]
    q = int8.embed_queries([x["text"] for x in late_queries])
    relevant = [{index[x["relevant"]]} for x in late_queries]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        truncate = ndcg(q @ int8.embed_documents(texts).T, relevant)
    mean = ndcg(q @ int8.embed_documents(texts, long="mean").T, relevant)
    late = ndcg(q @ int8.embed_documents(texts, long="late").T, relevant)
    print(f"nDCG@10 on {len(late_queries)} queries past 2,048 tokens: truncate {truncate:.4f}, "
          f"mean {mean:.4f}, late {late:.4f}")
    assert mean > truncate and late > truncate
