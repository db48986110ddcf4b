"""Token-exact chunking: offsets, token budgets, coverage, boundaries (tiny tokenizer)."""

from __future__ import annotations

import itertools

import pytest
import sentencepiece as spm
from hypothesis import given, settings
from hypothesis import strategies as st

from embgemma_plugins.chunking import Chunk, check_sizes, chunk_text, chunk_texts
from embgemma_plugins.errors import InvalidArgumentError
from embgemma_plugins.tokenizer import Tokenizer
from tests.chunk_strategies import CJK, CODE, EVERY_KIND, LONG_WORDS, PROSE

PROMPT = "title: none | text: "


@pytest.fixture(scope="module")
def tok(tiny_checkpoint) -> Tokenizer:
    return Tokenizer(tiny_checkpoint / "tokenizer.model")


@pytest.fixture(scope="module")
def sp(tiny_checkpoint) -> spm.SentencePieceProcessor:
    """The plain sentencepiece model: an independent count of what the model sees."""
    return spm.SentencePieceProcessor(model_file=str(tiny_checkpoint / "tokenizer.model"))


def check_chunks(
    sp: spm.SentencePieceProcessor, text: str, prompt: str, chunks: list[Chunk], max_tokens: int
) -> None:
    """Every property a chunking must have, checked from first principles."""
    assert chunks and chunks[0].start == 0 and chunks[-1].end == len(text)
    rebuilt, covered = [], 0
    for i, c in enumerate(chunks):
        assert c.index == i
        assert c.text == text[c.start : c.end]
        assert c.start <= covered, f"gap before chunk {i}"
        assert c.end > covered or len(text) == 0, f"chunk {i} adds nothing"
        rebuilt.append(text[covered : c.end])
        covered = c.end
        seen = len(sp.encode(prompt + c.text)) + 2  # BOS + prompt + text + EOS
        assert c.tokens == seen <= max_tokens
    assert "".join(rebuilt) == text
    for a, b in itertools.pairwise(chunks):
        assert a.start < b.start


@settings(max_examples=150, deadline=None)
@given(text=EVERY_KIND, max_tokens=st.integers(25, 90), overlap_share=st.floats(0, 0.5))
def test_chunks_cover_text_exactly_within_budget(tok, sp, text, max_tokens, overlap_share):
    overlap = int(max_tokens * overlap_share)
    chunks = chunk_text(tok, text, PROMPT, max_tokens, overlap)
    check_chunks(sp, text, PROMPT, chunks, max_tokens)


@settings(max_examples=60, deadline=None)
@given(text=st.one_of(CJK, CODE, LONG_WORDS, PROSE), overlap=st.integers(0, 12))
def test_overlap_is_at_most_the_asked_tokens(tok, text, overlap):
    chunks = chunk_text(tok, text, PROMPT, 40, overlap)
    _ids, begins, _ends = tok.pieces(text)
    for a, b in itertools.pairwise(chunks):
        shared = int(((begins >= b.start) & (begins < a.end)).sum())
        assert shared <= overlap
        if overlap == 0:
            assert b.start == a.end


@settings(max_examples=200, deadline=None)
@given(text=EVERY_KIND)
def test_piece_offsets_are_sentencepieces_own_surfaces(tok, sp, text):
    from sentencepiece import sentencepiece_pb2

    ids, begin, end = tok.pieces(text)
    proto = sentencepiece_pb2.SentencePieceText.FromString(
        sp.encode(text, out_type="serialized_proto")
    )
    assert ids.tolist() == [p.id for p in proto.pieces] == sp.encode(text)
    assert [text[b:e] for b, e in zip(begin, end, strict=True)] == [p.surface for p in proto.pieces]
    assert "".join(text[b:e] for b, e in zip(begin, end, strict=True)) == text
    assert all(b <= e for b, e in zip(begin, end, strict=True))
    assert (begin[1:] >= begin[:-1]).all() and (end[:-1] == begin[1:]).all()


def test_a_text_that_fits_is_one_chunk(tok, sp):
    seen = len(sp.encode(PROMPT + "A short text.")) + 2
    assert chunk_text(tok, "A short text.", PROMPT, 64, 8) == [
        Chunk(0, 0, 13, "A short text.", seen)
    ]
    (empty,) = chunk_text(tok, "", PROMPT, 64, 8)
    assert (empty.start, empty.end, empty.text) == (0, 0, "")


def test_chunks_end_at_paragraphs_before_sentences(tok):
    paragraph = "Simple is better than complex. Readability counts. " * 2
    text = "\n\n".join([paragraph.strip()] * 6)
    chunks = chunk_text(tok, text, PROMPT, 120, 0)
    assert len(chunks) > 1
    for c in chunks[:-1]:
        assert c.text.endswith("\n\n"), repr(c.text[-20:])


def test_chunks_end_at_sentences_in_cjk_without_spaces(tok):
    text = "東京は日本の首都です。" * 40
    chunks = chunk_text(tok, text, PROMPT, 60, 0)
    assert len(chunks) > 1 and all(c.text.endswith("。") for c in chunks)


def test_code_is_cut_at_lines_and_keeps_indentation(tok):
    text = "".join(f"def f{i}(a, b):\n    return a + b\n" for i in range(30))
    chunks = chunk_text(tok, text, PROMPT, 80, 24)  # a line is 8 to 11 tokens here
    assert len(chunks) > 3
    for c in chunks:
        assert c.text.endswith("\n") or c.end == len(text)
        assert c.text.startswith(("def", "    return"))
    for c in chunk_text(tok, text, PROMPT, 80, 6)[1:]:  # no whole line fits: a word start
        assert text[c.start - 1].isspace() and not text[c.start].isspace()


def test_a_word_longer_than_a_chunk_is_cut_between_pieces(tok, sp):
    text = "Explicit " + "x" * 3000 + " implicit"
    chunks = chunk_text(tok, text, PROMPT, 50, 5)
    check_chunks(sp, text, PROMPT, chunks, 50)
    assert len(chunks) > 5


def test_titles_change_the_budget(tok):
    text = "Readability counts. " * 100
    titled = "title: The Zen of Python, by Tim Peters | text: "
    plain = chunk_text(tok, text, PROMPT, 64, 0)
    longer = chunk_text(tok, text, titled, 64, 0)
    assert len(longer) > len(plain)
    assert max(c.tokens for c in longer) <= 64


def test_the_default_overlap_fits_any_chunk_size(tok):
    assert [check_sizes(n, None) for n in (2048, 512, 128, 100, 40, 11)] == [64, 64, 64, 50, 20, 5]
    assert check_sizes(40, 0) == 0 and check_sizes(40, 20) == 20  # a given overlap is kept
    text = "Readability counts. Errors should never pass silently. " * 40
    chunks = chunk_text(tok, text, PROMPT, 40)  # no overlap named: 20 tokens, not an error
    assert len(chunks) > 2 and max(c.tokens for c in chunks) <= 40
    assert all(b.start < a.end for a, b in itertools.pairwise(chunks))  # neighbours overlap
    assert chunk_texts(tok, [text], [PROMPT], 40) == [chunks]


def test_bad_sizes_and_texts_are_named(tok):
    with pytest.raises(InvalidArgumentError, match="max_tokens must be in"):
        chunk_texts(tok, ["x"], [PROMPT], 4000, 0)
    with pytest.raises(InvalidArgumentError, match=r"overlap must be in 0\.\.32"):
        chunk_texts(tok, ["x"], [PROMPT], 64, 40)
    with pytest.raises(InvalidArgumentError, match=r"texts\[1\]: .*leaving"):
        chunk_texts(tok, ["x", "y"], [PROMPT, "title: " + "long " * 40 + "| text: "], 20, 0)
    with pytest.raises(InvalidArgumentError, match=r"texts\[0\]: character 3 \(U\+D800\)"):
        chunk_texts(tok, ["abc\ud800"], [PROMPT], 64, 0)
    with pytest.raises(InvalidArgumentError, match="1 prompts for 2 texts"):
        chunk_texts(tok, ["a", "b"], [PROMPT], 64, 0)
