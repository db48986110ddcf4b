"""GPTQ rounding (onnx_models/gptq.py) and the calibration Hessians it reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embgemma_plugins.onnx_models import graph as G
from embgemma_plugins.onnx_models.blockquant import (
    blocks_along_k,
    dequantize_blocks,
    quantize_blocks,
)
from embgemma_plugins.onnx_models.build import calibrate
from embgemma_plugins.onnx_models.gptq import gptq_blocks
from embgemma_plugins.onnx_models.recipe import MatMulRule, Recipe
from embgemma_plugins.onnx_models.smoothing import smooth

from .test_quantize import TEXTS


def output_error(w: np.ndarray, dequantised: np.ndarray, hessian: np.ndarray) -> float:
    """E ||x @ (w - w_hat)||**2 for inputs x with E[x x^T] = hessian."""
    delta = (w - dequantised).astype(np.float64)
    return float(np.trace(delta.T @ hessian @ delta))


def weights_of(codes: tuple, bits: int, k: int) -> np.ndarray:  # type: ignore[type-arg]
    n = codes[0].shape[0]
    return dequantize_blocks(*codes, bits).reshape(n, k).T


@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("symmetric", [True, False])
def test_uncorrelated_inputs_give_plain_rounding(symmetric: bool, act_order: bool) -> None:
    # With H = c * I no channel can compensate another: GPTQ must equal round-to-nearest.
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 24)).astype(np.float32)
    plain = quantize_blocks(blocks_along_k(w, 32), 4, symmetric, search=4)
    gptq = gptq_blocks(w, 3.0 * np.eye(64), 4, 32, symmetric, search=4, act_order=act_order)
    for a, b in zip(plain, gptq, strict=True):
        assert (a is None and b is None) or np.array_equal(a, b)


@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("bits, symmetric", [(4, False), (4, True), (8, True)])
def test_correlated_inputs_cost_less_output_error(
    bits: int, symmetric: bool, act_order: bool
) -> None:
    rng = np.random.default_rng(1)
    k, n = 128, 48
    mixing = np.eye(k) + 0.3 * rng.standard_normal((k, k))
    x = rng.standard_normal((5000, k)) @ mixing * np.where(rng.random(k) < 0.05, 8.0, 1.0)
    hessian = x.T @ x / len(x)
    w = (0.05 * rng.standard_normal((k, n))).astype(np.float32)
    plain = quantize_blocks(blocks_along_k(w, 32), bits, symmetric)
    gptq = gptq_blocks(w, hessian, bits, 32, symmetric, act_order=act_order)
    assert gptq[0].shape == (n, k // 32, 32) and gptq[0].max() < 2**bits
    rtn_error = output_error(w, weights_of(plain, bits, k), hessian)
    gptq_error = output_error(w, weights_of(gptq, bits, k), hessian)
    assert gptq_error < 0.8 * rtn_error


def test_a_partial_last_block_is_padded_like_the_plain_path() -> None:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((40, 8)).astype(np.float32)
    plain = quantize_blocks(blocks_along_k(w, 32), 8, True)
    gptq = gptq_blocks(w, np.eye(40), 8, 32, True)
    assert gptq[0].shape == plain[0].shape == (8, 2, 32)
    assert np.array_equal(gptq[0], plain[0]) and np.array_equal(gptq[1], plain[1])


def test_calibration_hessians_follow_smoothing(tiny_optimum: Path, tokenize) -> None:  # type: ignore[no-untyped-def]
    model = G.load(tiny_optimum)
    G.keep_outputs(model, ["sentence_embedding"])
    rule = MatMulRule(bits=4, block_size=16, symmetric=False, gptq=True)
    recipe = Recipe(
        "t", matmul=rule, smoothing=(("(q|k|v|gate|up)_proj", 0.5),), calibration_samples=16
    )
    assert recipe.calibrated() and recipe.needs_hessians()
    stats = calibrate(model, recipe, TEXTS, tokenize)
    smooth(model, recipe.smoothing, stats)
    for seen in stats.values():
        assert seen.hessian is not None
        assert seen.hessian.shape == (len(seen.mean_sq),) * 2
        # the Hessian's diagonal is each channel's mean square, before and after smoothing
        np.testing.assert_allclose(np.diag(seen.hessian), seen.mean_sq, rtol=1e-6)
        assert np.linalg.eigvalsh(seen.hessian).min() >= -1e-6 * seen.mean_sq.max()
