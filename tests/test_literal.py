"""User text never becomes a control or user-defined token (issue 23, finding 5).

Every piece of the vocabulary that is not an ordinary text piece (control, unknown, byte,
user-defined) is typed into a text, alone, between letters and after a prompt: the ids
must hold none of the protected ids, and decode back to exactly the text.  A second,
purpose-built vocabulary has overlapping and one-character user-defined pieces.  The
scan that finds user-defined pieces is checked against protobuf's reading of the model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sentencepiece as spm

from embgemma_plugins.tokenizer import Tokenizer
from tests.pieces import USER_DEFINED, check_every_piece, kinds
from tests.texts import TEXTS

HOSTILE = ["<start_of_turn>", "<end_of_turn>", "<a>", "a>b", "<a>b", "§", "[multimodal]",
           "\n\n", "<start_of_image>"]


def test_every_non_normal_piece_of_the_tiny_vocabulary_is_plain_text(tiny_model):
    model_file = tiny_model / "tokenizer.model"
    tok = Tokenizer(model_file)
    assert check_every_piece(tok, model_file) == 5 * len(kinds(model_file))
    assert 4 not in tok.encode(["a <mask> b"], 2048).ids[0].tolist()  # the case


@pytest.fixture(scope="module")
def hostile_vocabulary(tmp_path_factory) -> Path:
    """A vocabulary whose user-defined pieces overlap, nest and include one character."""
    from tests.tiny_model import _CORPUS

    folder = tmp_path_factory.mktemp("hostile")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(_CORPUS * 10), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "h"), vocab_size=400, model_type="bpe",
        byte_fallback=True, normalization_rule_name="identity", add_dummy_prefix=False,
        remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
        bos_piece="<bos>", unk_piece="<unk>", user_defined_symbols=HOSTILE,
        character_coverage=1.0, minloglevel=2, num_threads=1)
    return folder / "h.model"


def test_overlapping_and_one_character_pieces(hostile_vocabulary):
    tok = Tokenizer(hostile_vocabulary)
    assert tok.literal.strings == {s for s in HOSTILE if s not in ("\n\n", "<a>")}
    check_every_piece(tok, hostile_vocabulary)
    text = "<<a>b> a>b§<start_of_turn>§§<end_of_turn>[multimodal]]\n\n"
    ids = tok.encode([text], 2048).ids[0].tolist()
    sp = spm.SentencePieceProcessor(model_file=str(hostile_vocabulary))
    assert sp.decode(ids[1:-1]) == text
    assert not tok.literal.ids & set(ids)
    assert sp.piece_to_id("\n\n") in ids  # whitespace runs stay the ordinary pieces they are
    # and so do HTML tags (web text the model read), unless a protected string overlaps one
    assert sp.piece_to_id("<a>") in tok.encode(["x <a> y"], 2048).ids[0].tolist()


@pytest.mark.parametrize("which", ["tiny", "hostile"])
def test_the_scan_finds_exactly_the_user_defined_pieces(tiny_model, hostile_vocabulary, which):
    from embgemma_plugins.literal import user_defined

    path = tiny_model / "tokenizer.model" if which == "tiny" else hostile_vocabulary
    expected = {p for p, kind in kinds(path).values() if kind == USER_DEFINED}
    assert user_defined(path.read_bytes()) == expected


def test_ordinary_text_keeps_its_ids(tiny_model):
    tok = Tokenizer(tiny_model / "tokenizer.model")
    sp = spm.SentencePieceProcessor(model_file=str(tiny_model / "tokenizer.model"))
    texts = [*TEXTS, "a < b and c[0] > d", "<html> is not a piece here", "[x]"]
    for text, ids in zip(texts, tok.encode(texts, 2048).ids, strict=True):
        assert ids.tolist() == [2, *sp.encode(text), 1], text
