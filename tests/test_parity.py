"""Vectors equal sentence-transformers' on the same (tiny) checkpoint."""

from __future__ import annotations

import pytest

from tests.conftest import cosines
from tests.texts import TEXTS

PARITY = 0.99999


@pytest.mark.parametrize("task", ["query", "document", "STS", "Clustering"])
def test_mixed_length_batch_matches_sentence_transformers(tiny_gemma, tiny_st, task):
    ours = tiny_gemma.embed(TEXTS, task=task)
    ref = tiny_st.encode(TEXTS, prompt_name=task, batch_size=len(TEXTS))
    assert ours.shape == ref.shape == (len(TEXTS), 768)
    assert cosines(ours, ref).min() >= PARITY


def test_single_texts_match_sentence_transformers(tiny_gemma, tiny_st):
    for text in TEXTS:
        ours = tiny_gemma.embed_queries([text])
        ref = tiny_st.encode_query([text])
        assert cosines(ours, ref)[0] >= PARITY, text


def test_inputs_longer_than_the_sliding_window_match(tiny_gemma, tiny_st):
    from tests.tiny_model import SLIDING_WINDOW

    long = TEXTS[8]
    assert len(tiny_gemma.tokenize([long]).ids[0]) > 20 * SLIDING_WINDOW
    ours = tiny_gemma.embed_documents([long, "short"])
    ref = tiny_st.encode_document([long, "short"])
    assert cosines(ours, ref).min() >= PARITY


def test_embed_documents_and_queries_use_the_reference_prompts(tiny_gemma, tiny_st):
    q = tiny_gemma.embed_queries(TEXTS[:4])
    d = tiny_gemma.embed_documents(TEXTS[:4])
    assert cosines(q, tiny_st.encode_query(TEXTS[:4])).min() >= PARITY
    assert cosines(d, tiny_st.encode_document(TEXTS[:4])).min() >= PARITY
    assert cosines(q, d).max() < 0.9999  # the two prompts really differ
