"""The token-embedding table as rotated, vector-quantised rows: 4.02 bits a weight.

int4 must fit in 200 MB, and the 262144 x 768 table is half of it; at 4 bits in uniform
blocks (GatherBlockQuantized) it is also half of int4's drift (docs/variants.md: an exact
table takes the mean cosine loss from 0.0038 to 0.0023). Uniform levels waste bits twice
over: the block scales cost 0.31 bits a weight, and the rows' values are far from uniform
(a few wide columns, kurtosis 6). This format spends the same bits better:

1. **Rotate** each row by an orthogonal R = diag(signs) . blockdiag(H_b) / sqrt(b)
   (random signs, Sylvester Hadamard blocks of b = 64): the rotated values are close to
   i.i.d. Gaussian (kurtosis 2.99 on EmbeddingGemma's table), whatever the columns were.
2. **Scale** each row by one float16 scale (its RMS times the best of a few ratios).
3. **Quantise triples** of values to the nearest of 4096 points of a fixed codebook built
   for the standard Gaussian in 3-D (k-means on Gaussian samples; not fitted to any model):
   12 bits per 3 values. Vector quantisation packs the cells better than 16 levels per
   value do (Gaussian MSE per value 0.0071 against Lloyd-Max's 0.0095).

Measured on the real table (16384 rows): squared error 0.71 of the uniform blocks of 64
that int4 used, at 4.02 instead of 4.31 bits a weight (7 MB less). The lookup decodes only
the rows a batch needs: Gather the codes, unpack 12-bit pairs, Gather codewords, scale,
and undo the rotation with one small MatMul (a b x b Hadamard) and the signs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from embgemma_plugins.maths import hadamard, rotate, rotation_block

CODEBOOK = Path(__file__).with_name("data") / "gaussian3d_4096.npz"
DIM = 3  # values per codeword
SEED = 0  # of the rotation's signs
TINY = np.float32(2.0**-24)  # float16's smallest step


def rotation_signs(width: int, seed: int = SEED) -> np.ndarray:
    """Random +-1 signs [width] of a rotation (`embgemma_plugins.maths.rotate`)."""
    signs = np.random.default_rng(seed).choice(np.array([-1.0, 1.0], np.float32), width)
    return signs.astype(np.float32)


def gaussian_codebook(
    size: int = 4096, dim: int = DIM, samples: int = 2_000_000, iters: int = 60, seed: int = 0
) -> np.ndarray:
    """k-means (Lloyd) codebook of `size` points for the standard Gaussian in `dim` dims."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, dim))
    book = x[rng.choice(samples, size, replace=False)].copy()
    for _ in range(iters):
        _, nearest = cKDTree(book).query(x, workers=-1)
        count = np.bincount(nearest, minlength=size)
        for d in range(dim):
            total = np.bincount(nearest, x[:, d], minlength=size)
            book[:, d] = np.where(count > 0, total / np.maximum(count, 1), book[:, d])
    return book.astype(np.float32)


def load_codebook(path: Path = CODEBOOK) -> np.ndarray:
    with np.load(path) as data:
        book: np.ndarray = data["codebook"].astype(np.float32)
    return book


def padded(width: int) -> int:
    """Row width rounded up to whole pairs of codewords (6 values: 3 bytes of codes)."""
    return -(-width // (2 * DIM)) * 2 * DIM


def quantise(
    table: np.ndarray, book: np.ndarray, ratios: int = 5, chunk: int = 16384
) -> tuple[np.ndarray, np.ndarray]:
    """Codes [V, padded / 3] (uint16, < len(book)) and float16 row scales [V] of `table`."""
    from scipy.spatial import cKDTree

    v, width = table.shape
    signs = rotation_signs(width)
    tree = cKDTree(book)
    codes = np.zeros((v, padded(width) // DIM), np.uint16)
    scales = np.zeros(v, np.float16)
    for start in range(0, v, chunk):
        rows = np.zeros((min(chunk, v - start), padded(width)), np.float32)
        rows[:, :width] = rotate(table[start : start + chunk].astype(np.float32), signs)
        rms = np.sqrt((rows[:, :width] ** 2).mean(1))
        best = np.full(len(rows), np.inf)
        for ratio in np.linspace(0.85, 1.15, ratios) if ratios > 1 else [1.0]:
            # an all-zero row (a padding token's) keeps the smallest float16 step: ~0 back
            scale = np.maximum(rms * ratio, TINY).astype(np.float16)
            unit = rows / scale.astype(np.float32)[:, None]
            _, found = tree.query(unit.reshape(-1, DIM), workers=-1)
            found = found.reshape(len(rows), -1)
            back = book[found].reshape(rows.shape) * scale.astype(np.float32)[:, None]
            err = ((back - rows)[:, :width] ** 2).sum(1)
            better = err < best
            best[better] = err[better]
            codes[start : start + len(rows)][better] = found[better]
            scales[start : start + len(rows)][better] = scale[better]
    return codes, scales


def pack12(codes: np.ndarray) -> np.ndarray:
    """Pairs of 12-bit codes [..., 2n] -> bytes [..., 3n]: b0 = c0 low 8 bits,
    b1 = c0 high 4 | c1 low 4 << 4, b2 = c1 high 8."""
    c0, c1 = codes[..., 0::2].astype(np.uint16), codes[..., 1::2].astype(np.uint16)
    out = np.stack([c0 & 255, (c0 >> 8) | ((c1 & 15) << 4), c1 >> 4], axis=-1)
    return out.astype(np.uint8).reshape(*codes.shape[:-1], -1)


def unpack12(packed: np.ndarray) -> np.ndarray:
    b = packed.reshape(*packed.shape[:-1], -1, 3).astype(np.uint16)
    c0 = b[..., 0] | ((b[..., 1] & 15) << 8)
    c1 = (b[..., 1] >> 4) | (b[..., 2] << 4)
    return np.stack([c0, c1], axis=-1).reshape(*packed.shape[:-1], -1)


def dequantise(packed: np.ndarray, scales: np.ndarray, book: np.ndarray, width: int) -> np.ndarray:
    """The float32 rows the graph's lookup computes (numpy reference)."""
    signs = rotation_signs(width)
    rows = book[unpack12(packed).astype(np.int64)].reshape(*packed.shape[:-1], -1)[..., :width]
    return rotate(rows * scales.astype(np.float32)[..., None], signs, inverse=True)


def vq_gather(
    node: onnx.NodeProto, table: np.ndarray, book: np.ndarray, ratios: int
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes replacing Gather(table[V, D], ids) by the decode of the table's VQ codes."""
    width = table.shape[1]
    codes, scales = quantise(table, book, ratios)
    signs, block = rotation_signs(width), rotation_block(width)
    ids, out, b = node.input[1], node.output[0], node.input[0] + "_vq"
    inits = [
        numpy_helper.from_array(pack12(codes), b + "_codes"),
        numpy_helper.from_array(scales, b + "_scales"),
        numpy_helper.from_array(book, b + "_book"),
        numpy_helper.from_array(hadamard(block) / np.float32(np.sqrt(block)), b + "_hadamard"),
        numpy_helper.from_array(signs, b + "_signs"),
        numpy_helper.from_array(np.array([0, 0, -1, 3], np.int64), b + "_bytes"),
        numpy_helper.from_array(np.array([0, 0, -1], np.int64), b + "_flat"),
        numpy_helper.from_array(np.array([0, 0, -1, block], np.int64), b + "_blocks"),
        numpy_helper.from_array(np.array([0], np.int64), b + "_zero"),
        numpy_helper.from_array(np.array([width], np.int64), b + "_width"),
        numpy_helper.from_array(np.array([-1], np.int64), b + "_last"),
        numpy_helper.from_array(np.array([1, 1, 1], np.int64), b + "_ones"),
        numpy_helper.from_array(np.array(4, np.uint16), b + "_4"),
        numpy_helper.from_array(np.array(8, np.uint16), b + "_8"),
        numpy_helper.from_array(np.array(15, np.uint16), b + "_15"),
    ]

    def op(kind: str, inputs: list[str], output: str, **attrs: Any) -> onnx.NodeProto:
        return helper.make_node(kind, inputs, [output], name=f"{b}/{output}", **attrs)

    left, right = {"direction": "LEFT"}, {"direction": "RIGHT"}
    nodes = [
        op("Gather", [b + "_codes", ids], b + "_g"),  # [B, T, 3n/2] uint8
        op("Cast", [b + "_g"], b + "_g16", to=TensorProto.UINT16),
        op("Reshape", [b + "_g16", b + "_bytes"], b + "_triples"),  # [B, T, n/2, 3]
        op("Split", [b + "_triples", b + "_ones"], b + "_b0", axis=-1),
    ]
    nodes[-1].output.extend([b + "_b1", b + "_b2"])
    nodes += [
        op("BitwiseAnd", [b + "_b1", b + "_15"], b + "_lo1"),
        op("BitShift", [b + "_lo1", b + "_8"], b + "_hi0", **left),
        op("BitwiseOr", [b + "_b0", b + "_hi0"], b + "_c0"),
        op("BitShift", [b + "_b1", b + "_4"], b + "_lo2", **right),
        op("BitShift", [b + "_b2", b + "_4"], b + "_hi2", **left),
        op("BitwiseOr", [b + "_lo2", b + "_hi2"], b + "_c1"),
        op("Concat", [b + "_c0", b + "_c1"], b + "_pairs", axis=-1),
        op("Reshape", [b + "_pairs", b + "_flat"], b + "_c16"),  # [B, T, n]
        op("Cast", [b + "_c16"], b + "_c", to=TensorProto.INT32),
        op("Gather", [b + "_book", b + "_c"], b + "_points"),  # [B, T, n, 3]
        op("Reshape", [b + "_points", b + "_flat"], b + "_wide"),  # [B, T, padded]
        op("Slice", [b + "_wide", b + "_zero", b + "_width", b + "_last"], b + "_rot"),
        op("Gather", [b + "_scales", ids], b + "_s16"),
        op("Cast", [b + "_s16"], b + "_s", to=TensorProto.FLOAT),  # never a fp16 activation
        op("Unsqueeze", [b + "_s", b + "_last"], b + "_s1"),
        op("Mul", [b + "_rot", b + "_s1"], b + "_scaled"),
        op("Reshape", [b + "_scaled", b + "_blocks"], b + "_hb"),
        op("MatMul", [b + "_hb", b + "_hadamard"], b + "_mixed"),
        op("Reshape", [b + "_mixed", b + "_flat"], b + "_unsigned"),
        op("Mul", [b + "_unsigned", b + "_signs"], out),
    ]
    return nodes, inits
