"""Matryoshka: first d values of the normalised 768-d vector, renormalised."""

from __future__ import annotations

import numpy as np
import pytest

from embgemma_plugins import EmbeddingGemma
from embgemma_plugins.errors import InvalidArgumentError
from tests.texts import TEXTS


@pytest.mark.parametrize("dims", [768, 512, 256, 128])
def test_shape_norm_and_truncation(tiny_model, tiny_gemma, dims):
    full = tiny_gemma.embed_queries(TEXTS)
    m = EmbeddingGemma(tiny_model, dimensions=dims)
    got = m.embed_queries(TEXTS)
    assert got.shape == (len(TEXTS), dims) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    expected = full[:, :dims] / np.linalg.norm(full[:, :dims], axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("dims", [0, 100, 1024, 767, "256", 256.0, True])
def test_bad_dimensions_are_refused(tiny_model, dims):
    with pytest.raises(InvalidArgumentError, match="dimensions"):
        EmbeddingGemma(tiny_model, dimensions=dims)


def test_empty_list_gives_zero_rows(tiny_model):
    m = EmbeddingGemma(tiny_model, dimensions=256)
    out = m.embed([])
    assert out.shape == (0, 256) and out.dtype == np.float32
    assert m.embed_documents([], titles=[]).shape == (0, 256)
