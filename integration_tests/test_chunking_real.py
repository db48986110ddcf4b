"""Chunking with EmbeddingGemma's real 262k-piece tokenizer: the same properties as the
unit tests (offsets, budgets, coverage), on random text and on real long files."""

from __future__ import annotations

from pathlib import Path

import pytest
import sentencepiece as spm
from hypothesis import given, settings
from hypothesis import strategies as st

from embgemma_plugins.chunking import chunk_text
from embgemma_plugins.tokenizer import Tokenizer
from tests.chunk_strategies import EVERY_KIND
from tests.test_chunking import check_chunks

PROMPT = "title: none | text: "


@pytest.fixture(scope="module")
def tok(real_checkpoint: Path) -> Tokenizer:
    return Tokenizer(real_checkpoint / "tokenizer.model")


@pytest.fixture(scope="module")
def sp(real_checkpoint: Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(real_checkpoint / "tokenizer.model"))


@settings(max_examples=300, deadline=None)
@given(text=EVERY_KIND, max_tokens=st.integers(20, 120), overlap_share=st.floats(0, 0.5))
def test_real_tokenizer_chunks_cover_text_within_budget(tok, sp, text, max_tokens, overlap_share):
    chunks = chunk_text(tok, text, PROMPT, max_tokens, int(max_tokens * overlap_share))
    check_chunks(sp, text, PROMPT, chunks, max_tokens)


def test_a_50k_token_file_in_512_token_chunks(tok, sp):
    """A real long file (the standard library's argparse and typing, about 50,000 tokens)."""
    import argparse
    import typing

    text = "".join(Path(m.__file__).read_text(encoding="utf-8") for m in (argparse, typing))
    total = len(sp.encode(text))
    assert total > 40_000
    chunks = chunk_text(tok, text, PROMPT, 512, 64)
    check_chunks(sp, text, PROMPT, chunks, 512)
    sizes = sorted(c.tokens for c in chunks)
    assert sizes[len(sizes) // 2] > 400  # chunks are filled, not cut short
    assert len(chunks) < total / (512 - 64 - 10) * 1.5
