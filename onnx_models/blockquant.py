"""Block-wise weight quantisation into ONNX Runtime's MatMulNBits / GatherBlockQuantized
(and per-column int8 for DynamicQuantizeMatMul)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MS_DOMAIN = "com.microsoft"
Quantised = tuple[np.ndarray, np.ndarray, np.ndarray | None]


def quantize_blocks(
    w: np.ndarray,
    bits: int,
    symmetric: bool,
    search: int = 0,
    importance: np.ndarray | None = None,
    chunk: int = 8192,
) -> Quantised:
    """Quantise `w` [rows, n_blocks, block] block by block, `chunk` rows at a time (bounded memory
    for the 262144-row embedding table).

    Returns codes (uint8; zero point 2**(bits-1) when symmetric), float32 scales [rows, n_blocks]
    and uint8 zero points (None when symmetric). `search` > 0 tries that many ranges shrunk down to
    75% per block and keeps the one with the smallest squared error, weighted by `importance`
    (broadcastable to [chunk, n_blocks, block]; e.g. mean x**2 of the input channel)."""
    parts = [
        _quantize(w[i : i + chunk], bits, symmetric, search, importance)
        for i in range(0, len(w), chunk)
    ]
    q, scale, zp = zip(*parts, strict=True)
    return np.concatenate(q), np.concatenate(scale), None if symmetric else np.concatenate(zp)


def _quantize(
    w: np.ndarray, bits: int, symmetric: bool, search: int, importance: np.ndarray | None
) -> Quantised:
    levels = 2**bits - 1
    lo, hi = w.min(-1, keepdims=True), w.max(-1, keepdims=True)
    # symmetric: the largest-magnitude value maps onto code 0 (one level more than
    # absmax/(2**(bits-1)-1), as GGML's Q4_0 does); the scale is then negative when that
    # value is positive: kernels only multiply
    peak = np.where(-lo > hi, lo, hi)
    best_err: np.ndarray | None = None
    best: list[np.ndarray] = []
    for ratio in np.linspace(1.0, 0.75, search) if search > 0 else [1.0]:
        if symmetric:
            scale = peak * ratio / -(2 ** (bits - 1))
            zp = np.full(scale.shape, 2 ** (bits - 1), np.float32)
        else:
            scale = (np.maximum(hi * ratio, 0) - np.minimum(lo * ratio, 0)) / levels
            zp = np.clip(
                np.round(-np.minimum(lo * ratio, 0) / np.where(scale == 0, 1, scale)), 0, levels
            )
        scale = np.where(scale == 0, 1e-12, scale)
        q = np.clip(np.round(w / scale) + zp, 0, levels)
        err = ((q - zp) * scale - w) ** 2
        err = (err if importance is None else err * importance).sum(-1, keepdims=True)
        if best_err is None:
            best_err, best = err, [q, scale, zp]
        else:
            better = err < best_err
            best_err = np.where(better, err, best_err)
            best = [
                np.where(better, new, old) for new, old in zip((q, scale, zp), best, strict=True)
            ]
    q, scale, zp = best
    return q.astype(np.uint8), scale[..., 0].astype(np.float32), zp[..., 0].astype(np.uint8)


def dequantize_blocks(
    q: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, bits: int
) -> np.ndarray:
    zero = 2 ** (bits - 1) if zp is None else zp[..., None].astype(np.float32)
    out: np.ndarray = (q.astype(np.float32) - zero) * scale[..., None]
    return out


def pack4(q: np.ndarray) -> np.ndarray:
    """Two 4-bit codes per byte, low nibble first, along the last axis."""
    if q.shape[-1] % 2:
        q = np.concatenate([q, np.zeros((*q.shape[:-1], 1), q.dtype)], -1)
    packed: np.ndarray = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    return packed


def blocks_along_k(w: np.ndarray, block_size: int) -> np.ndarray:
    """w[K, N] -> [N, ceil(K / block), block], zero-padded: MatMulNBits' weight layout."""
    k, n = w.shape
    n_blocks = -(-k // block_size)
    out = np.zeros((n, n_blocks * block_size), np.float32)
    out[:, :k] = w.T
    return out.reshape(n, n_blocks, block_size)


def nbits_error(
    w: np.ndarray, bits: int, block_size: int, symmetric: bool, importance: np.ndarray
) -> float:
    """sum_k importance[k] * sum_n (dequantised - w)[k, n]**2 for MatMulNBits storage of w[K, N]."""
    blocks = blocks_along_k(w, block_size)
    q, scale, zp = quantize_blocks(blocks, bits, symmetric)
    weight = blocks_along_k(importance[:, None].astype(np.float32), block_size)
    return float(((dequantize_blocks(q, scale, zp, bits) - blocks) ** 2 * weight).sum())


def matmul_nbits(
    node: onnx.NodeProto,
    w: np.ndarray,
    bits: int,
    block_size: int,
    symmetric: bool,
    accuracy_level: int,
    search: int = 0,
    importance: np.ndarray | None = None,
    codes: Quantised | None = None,
) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    """Replace MatMul(x, w[K, N]) by MatMulNBits with `bits`-bit blocks of `block_size` along K.
    `importance[K]` weights the clipping search (see `quantize_blocks`); `codes` already
    computed in that layout (e.g. by GPTQ) are stored as they are."""
    k, n = w.shape
    if codes is None:
        weight = (
            None
            if importance is None
            else blocks_along_k(importance[:, None].astype(np.float32), block_size)
        )
        codes = quantize_blocks(blocks_along_k(w, block_size), bits, symmetric, search, weight)
    q, scale, zp = codes
    base = node.name.strip("/").replace("/", "_") or node.output[0]
    inits = [
        numpy_helper.from_array(pack4(q) if bits == 4 else q, base + "_qweight"),
        numpy_helper.from_array(scale.reshape(-1), base + "_scales"),
    ]
    if zp is not None:
        inits.append(
            numpy_helper.from_array(
                (pack4(zp) if bits == 4 else zp).reshape(-1), base + "_zero_points"
            )
        )
    new = helper.make_node(
        "MatMulNBits",
        [node.input[0]] + [t.name for t in inits],
        list(node.output),
        name=node.name + f"_Q{bits}",
        domain=MS_DOMAIN,
        K=k,
        N=n,
        bits=bits,
        block_size=block_size,
        accuracy_level=accuracy_level,
    )
    return new, inits


def gather_block_quantized(
    node: onnx.NodeProto,
    table: np.ndarray,
    bits: int,
    block_size: int,
    symmetric: bool,
    search: int = 0,
) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    """Replace Gather(table[V, D], ids) by GatherBlockQuantized with blocks along D."""
    v, d = table.shape
    while d % block_size and block_size > 16:  # small (test) models: the largest block that fits
        block_size //= 2
    if d % block_size:
        raise ValueError(f"embedding width {d} is not a multiple of block size {block_size}")
    q, scale, zp = quantize_blocks(
        table.reshape(v, d // block_size, block_size), bits, symmetric, search
    )
    q = q.reshape(v, d)
    base = node.input[0]
    if bits == 4:  # INT4 (signed codes) when symmetric, UINT4 codes + UINT4 zero points otherwise
        codes = ((q.astype(np.int16) - 8) & 15).astype(np.uint8) if symmetric else q
        inits = [
            helper.make_tensor(
                base + "_q4",
                TensorProto.INT4 if symmetric else TensorProto.UINT4,
                [v, d],
                pack4(codes.reshape(-1)).tobytes(),
                raw=True,
            ),
            numpy_helper.from_array(scale, base + "_scales"),
        ]
        if zp is not None:
            inits.append(
                helper.make_tensor(
                    base + "_zero_points",
                    TensorProto.UINT4,
                    list(scale.shape),
                    pack4(zp.reshape(-1)).tobytes(),  # ONNX 4-bit tensors pack flat
                    raw=True,
                )
            )
        extra: dict[str, int] = {}
    else:
        inits = [
            numpy_helper.from_array(q, base + "_q8"),
            numpy_helper.from_array(scale, base + "_scales"),
        ]
        if zp is not None:
            inits.append(numpy_helper.from_array(zp, base + "_zero_points"))
        extra = {"bits": bits}
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    new = helper.make_node(
        "GatherBlockQuantized",
        [inits[0].name, node.input[1]] + [t.name for t in inits[1:]],
        list(node.output),
        name=node.name + f"_Q{bits}",
        domain=MS_DOMAIN,
        gather_axis=axis,
        quantize_axis=1,
        block_size=block_size,
        **extra,  # type: ignore[arg-type]  # make_node takes attributes as **kwargs
    )
    return new, inits


def int8_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per-output-column weights of w [K, N]: codes and float32 scales [N]."""
    scale = np.abs(w).max(0).astype(np.float64) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def dynamic_matmul(
    node: onnx.NodeProto, w: np.ndarray
) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    """Replace MatMul(x, w[K, N]) by DynamicQuantizeMatMul: int8 symmetric per-column weights,
    activations quantised per tensor (uint8) at run time."""
    q, scale = int8_columns(w)
    base = node.name.strip("/").replace("/", "_") or node.output[0]
    inits = [
        numpy_helper.from_array(q, base + "_qweight"),
        numpy_helper.from_array(scale, base + "_scales"),
        numpy_helper.from_array(np.zeros(w.shape[1], np.int8), base + "_zero_points"),
    ]
    new = helper.make_node(
        "DynamicQuantizeMatMul",
        [node.input[0]] + [t.name for t in inits],
        list(node.output),
        name=node.name + "_Q8dyn",
        domain=MS_DOMAIN,
    )
    return new, inits
