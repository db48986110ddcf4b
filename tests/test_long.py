"""The Python API for long texts: long= policies, chunk() and embed_chunks() (tiny model)."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from embgemma_plugins.chunking import OVERLAP
from embgemma_plugins.errors import InvalidArgumentError, TruncationWarning
from embgemma_plugins.long import CHUNK_TOKENS, mean_chunking
from tests.conftest import cosines
from tests.test_late import long_text


@pytest.fixture(scope="module")
def short_window(tiny_model):  # type: ignore[no-untyped-def]
    """The tiny model with a 96-token window: a few sentences are already "long"."""
    from embgemma_plugins import EmbeddingGemma

    return EmbeddingGemma(tiny_model, threads=1, max_length=96)


TEXTS = [long_text(2), long_text(40), "", long_text(25)]


def test_truncate_warns_naming_the_indices_cut(short_window):
    lengths = short_window.tokenize(TEXTS, short_window.prompt_for("document")).lengths
    with pytest.warns(TruncationWarning) as caught:
        got = short_window.embed_documents(TEXTS)
    (warning,) = caught
    assert warning.message.indices == [1, 3]
    assert warning.message.lengths == [int(lengths[1]), int(lengths[3])]
    assert "indices 1 (" in str(warning.message) and "max_length 96" in str(warning.message)
    prompt = short_window.prompt_for("document")
    plain = short_window.embed_tokens(short_window.tokenize(TEXTS, prompt))
    np.testing.assert_array_equal(got, plain)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        short_window.embed_documents([TEXTS[0], TEXTS[2]])  # nothing cut: no warning


def test_error_names_the_index_and_its_token_count(short_window):
    n = int(short_window.tokenize([TEXTS[1]], short_window.prompt_for("document")).lengths[0])
    with pytest.raises(InvalidArgumentError, match=rf"texts\[1\] is {n} tokens .*max_length 96"):
        short_window.embed_documents(TEXTS, long="error")
    with pytest.raises(InvalidArgumentError, match="long must be one of"):
        short_window.embed_documents(TEXTS, long="split")


def test_mean_is_the_token_weighted_mean_of_the_chunk_vectors(short_window):
    got = short_window.embed_documents(TEXTS, long="mean")
    (fits,) = short_window.embed_chunks([TEXTS[0]], 96, 48)
    assert len(fits.chunks) == 1
    np.testing.assert_allclose(got[0], short_window.embed_documents([TEXTS[0]])[0], atol=1e-6)
    size, overlap = mean_chunking(96, CHUNK_TOKENS, OVERLAP)
    assert (size, overlap) == (96, 48)
    for i in (1, 3):
        (item,) = short_window.embed_chunks([TEXTS[i]], size, overlap)
        assert len(item.chunks) > 1
        weights = np.array([c.tokens for c in item.chunks], dtype=np.float64)
        manual = (weights[:, None] * item.vectors).sum(axis=0)
        manual /= np.linalg.norm(manual)
        assert cosines(got[i : i + 1], manual[None, :])[0] >= 0.999999
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)


def test_late_of_a_text_that_fits_is_its_sentence_vector(tiny_gemma):
    texts = [long_text(3), long_text(9)]
    (a, b) = tiny_gemma.embed_chunks(texts, 512, 64, late=True)
    plain = tiny_gemma.embed_documents(texts)
    assert len(a.chunks) == len(b.chunks) == 1
    assert cosines(np.concatenate([a.vectors, b.vectors]), plain).min() >= 0.9999
    assert cosines(tiny_gemma.embed_documents(texts, long="late"), plain).min() >= 0.9999


def test_late_document_vector_of_a_long_text(short_window):
    from embgemma_plugins.late import late_vectors

    got = short_window.embed_documents(TEXTS, long="late")
    prompt = short_window.prompt_for("document")
    (expected,) = late_vectors(short_window, [TEXTS[1]], [prompt], [[(0, len(TEXTS[1]))]],
                               window=96)  # fmt: skip
    assert cosines(got[1:2], expected)[0] >= 0.999999
    assert cosines(got[1:2], short_window.embed_documents([TEXTS[1]], long="mean"))[0] < 0.9999


def test_titles_go_into_every_chunk_prompt(tiny_gemma):
    text = long_text(60)
    title = "The Zen of Python, by Tim Peters"
    titled = tiny_gemma.chunk([text], 64, 8, titles=[title])[0]
    plain = tiny_gemma.chunk([text], 64, 8)[0]
    assert len(titled) > len(plain)
    prompt = tiny_gemma.prompts.document_prompt(title)
    counted = tiny_gemma.tokenize([c.text for c in titled], prompt).lengths
    assert counted.tolist() == [c.tokens for c in titled] and counted.max() <= 64
    (item,) = tiny_gemma.embed_chunks([text], 64, 8, titles=[title])
    direct = tiny_gemma.embed([c.text for c in item.chunks], prompt=prompt)
    np.testing.assert_allclose(item.vectors, direct, atol=1e-6)


def test_a_50000_token_document_through_every_long_path(tiny_gemma):
    text = long_text(4000)
    n = int(tiny_gemma.tokenize([text]).lengths[0])
    assert n > 50_000
    (chunks,) = tiny_gemma.chunk([text])
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    assert all(b.start <= a.end for a, b in itertools.pairwise(chunks))
    assert max(c.tokens for c in chunks) <= 512
    for late in (False, True):
        (item,) = tiny_gemma.embed_chunks([text], late=late)
        assert item.vectors.shape == (len(chunks), 768)
        assert [c.start for c in item.chunks] == [c.start for c in chunks]
    for policy in ("mean", "late"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            (vector,) = tiny_gemma.embed_documents([text], long=policy)
        assert abs(np.linalg.norm(vector) - 1) < 1e-5
