"""GPTQ: error-compensating rounding of a weight matrix, in MatMulNBits' block layout.

Rounding each weight to its nearest level (what `blockquant.quantize_blocks` does) ignores
that a MatMul's inputs are correlated: the output error of x @ W is e^T H e per column, with
H = E[x x^T] from calibration, not the plain sum of squared weight errors. GPTQ (Frantar et
al., 2022) rounds the input channels one at a time and pushes each rounding error onto the
channels not yet rounded, weighted by the inverse Hessian, so later roundings cancel it.
Blocks (one scale and zero point per `block_size` input channels of an output column) are
chosen when the sweep reaches them, from the already-corrected weights, as in GPTQ's
grouped quantisation; in activation order they are fixed up front instead ("static
groups"), since the sweep then visits every block from the start."""

from __future__ import annotations

import numpy as np

from .blockquant import Quantised, quantize_blocks


def inverse_hessian_factor(hessian: np.ndarray, damp: float) -> np.ndarray:
    """Upper Cholesky factor U of H^-1 (H^-1 = U^T U), with `damp` x mean(diag H) added to the
    diagonal so rarely used channels (and too little calibration) stay well conditioned."""
    h = np.array(hessian, np.float64)
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    h[np.diag_indices_from(h)] += damp * float(np.mean(np.diag(h)))
    factor: np.ndarray = np.linalg.cholesky(np.linalg.inv(h)).T
    return factor


def gptq_blocks(
    w: np.ndarray,
    hessian: np.ndarray,
    bits: int,
    block_size: int,
    symmetric: bool,
    search: int = 0,
    damp: float = 0.01,
    act_order: bool = False,
) -> Quantised:
    """Quantise w[K, N] (x @ w, x with E[x x^T] = `hessian`[K, K]) into MatMulNBits blocks.

    Returns what `quantize_blocks` returns for `blocks_along_k(w, block_size)`: codes
    [N, K / block, block], scales and zero points [N, K / block]. `search` > 0 picks each
    block's clipping range by the least error weighted by diag(H), as the plain path does.
    `act_order`: round the channels with the largest mean x**2 first (their errors then have
    the most channels left to absorb them); block ranges are then fixed up front from w."""
    if len(w) % block_size:  # zero channels fill the last block, as in `blocks_along_k`
        pad = block_size - len(w) % block_size
        w = np.pad(w, ((0, pad), (0, 0)))
        hessian = np.pad(hessian, ((0, pad), (0, pad)))
    k, n = w.shape
    importance = np.diag(hessian).astype(np.float32)
    order = np.argsort(-importance, kind="stable") if act_order else np.arange(k)
    u = inverse_hessian_factor(hessian[np.ix_(order, order)], damp)
    work = np.array(w.T, np.float64)  # [N, K]: one row per output column
    work[:, importance <= 0] = 0.0  # channels never seen: any value is as good
    work = work[:, order]
    blocks = (k // block_size, block_size)
    codes = np.zeros((n, *blocks), np.uint8)
    scales = np.zeros((n, blocks[0]), np.float32)
    zeros = np.full((n, blocks[0]), 2 ** (bits - 1), np.uint8)
    weights = importance.reshape(1, *blocks)
    if act_order:
        _, scales[:], found = quantize_blocks(
            w.T.reshape(n, *blocks), bits, symmetric, search, weights
        )
        if found is not None:
            zeros[:] = found
    for start in range(0, k, block_size):  # lazy batches of one block's width
        end = start + block_size
        batch = work[:, start:end]  # a view: corrected in place as the sweep goes
        if not act_order:  # natural order: this batch is block start // block_size
            group = start // block_size
            _, scale, found = quantize_blocks(
                batch[:, None].astype(np.float32),
                bits,
                symmetric,
                search,
                weights[:, group : group + 1],
            )
            scales[:, group] = scale[:, 0]
            if found is not None:
                zeros[:, group] = found[:, 0]
        errors = np.zeros_like(batch)
        for j in range(end - start):
            channel = order[start + j]
            group, slot = divmod(int(channel), block_size)
            step = scales[:, group].astype(np.float64)
            zero = zeros[:, group].astype(np.float64)
            code = np.clip(np.round(batch[:, j] / step) + zero, 0, 2**bits - 1)
            codes[:, group, slot] = code
            errors[:, j] = (batch[:, j] - (code - zero) * step) / u[start + j, start + j]
            batch[:, j + 1 :] -= np.outer(errors[:, j], u[start + j, start + j + 1 : end])
        work[:, end:] -= errors @ u[start:end, end:]
    return codes, scales, None if symmetric else zeros
