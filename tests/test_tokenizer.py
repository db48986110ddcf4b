"""SentencePiece ids: BOS + pieces + EOS, truncation keeping EOS, right padding."""

from __future__ import annotations

import numpy as np
import pytest

from embgemma_plugins.errors import InvalidArgumentError
from embgemma_plugins.tokenizer import Tokenizer
from tests.texts import TEXTS


@pytest.fixture(scope="module")
def tok(tiny_model):
    return Tokenizer(tiny_model / "tokenizer.model")


def test_special_ids_are_gemmas(tok):
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (2, 1, 0)


def test_ids_equal_the_hugging_face_tokenizer(tok, tiny_st):
    hf = tiny_st.tokenizer
    enc = tok.encode(TEXTS, max_length=2048)
    for text, ids in zip(TEXTS, enc.ids, strict=True):
        assert ids.tolist() == hf(text)["input_ids"], text
        assert ids[0] == 2 and ids[-1] == 1 and ids.dtype == np.int64


def test_truncation_keeps_eos_last_and_reports_the_full_length(tok, tiny_st):
    long = TEXTS[8]
    full = tok.encode([long], max_length=2048)
    cut = tok.encode([long], max_length=16)
    assert len(cut.ids[0]) == 16 and cut.ids[0][-1] == 1 and cut.ids[0][0] == 2
    assert cut.ids[0][:-1].tolist() == full.ids[0][:15].tolist()
    assert cut.lengths[0] == len(full.ids[0]) and cut.truncated.tolist() == [True]
    assert full.truncated.tolist() == [False]
    hf = tiny_st.tokenizer(long, truncation=True, max_length=16)["input_ids"]
    assert cut.ids[0].tolist() == hf


def test_truncation_through_the_model(tiny_model):
    from embgemma_plugins import EmbeddingGemma

    m = EmbeddingGemma(tiny_model, max_length=10)
    enc = m.tokenize([TEXTS[8], "a"], m.prompt_for("query"))
    assert [len(x) for x in enc.ids] == [10, 10]
    assert enc.truncated.tolist() == [True, True]  # the prompt alone is longer than 8 pieces
    assert m.embed_queries([TEXTS[8]]).shape == (1, 768)


def test_special_token_text_is_plain_text(tok):
    enc = tok.encode(["<bos> hello <eos> <pad>"], max_length=2048)
    ids = enc.ids[0].tolist()
    assert ids[0] == 2 and ids[-1] == 1
    assert 2 not in ids[1:-1] and 1 not in ids[1:-1] and 0 not in ids


def test_empty_string_is_bos_eos(tok):
    assert tok.encode([""], 2048).ids[0].tolist() == [2, 1]


def test_padding_is_right_with_pad_id(tok):
    ids, mask = tok.pad([np.array([2, 5, 6, 1]), np.array([2, 1])])
    assert ids.tolist() == [[2, 5, 6, 1], [2, 1, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]


def test_max_length_below_three_is_refused(tok):
    with pytest.raises(InvalidArgumentError, match="max_length"):
        tok.encode(["x"], max_length=2)
