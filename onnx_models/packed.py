"""4-bit weights on disk, int8 per-row GEMMs at run time.

`MatMulNBits` keeps 4-bit weights small, but its kernels run at a fraction of the per-row int8
GEMM's speed (`rowwise.py`: MatMulIntegerToFloat on VNNI/AMX; 1.9 against 8-12 ms for the
same MatMuls on an AMX host, docs/variants.md). This module stores each weight as 4-bit blocks
(packed two codes per byte, a scale and a zero point per block along the input axis, the
layout GPTQ rounds in) plus a small subgraph that rebuilds the int8 per-column weights the
GEMM reads::

    codes = BitwiseAnd(packed, 15), BitShift(packed, 4)   interleaved -> [N, blocks, block]
    w     = (codes - zero) * scale                         float32, the 4-bit weights
    q8    = QuantizeLinear(w^T, s_col)                     int8 [K, N], s_col = max|w| / 127

Every input of that subgraph is a constant, so ONNX Runtime's constant folding turns it into
the int8 initializer when the session loads (the runtime enables all optimisations); the file
holds the 4-bit codes only. (A 4-bit `DequantizeLinear` would be one node, but ONNX Runtime
does not fold it; the bitwise unpack folds.) `int8_columns` gives the same q8 and s_col in
numpy, so export measures exactly what the runtime will compute.

The subgraphs are put in after the export-time optimisation (`unpack_weights`): ONNX
Runtime's offline pass would otherwise fold them back into int8 on disk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from embgemma_plugins.maths import hadamard, rotation_block
from embgemma_plugins.unpack4 import PACKED_KEY, int8_columns

from .blockquant import Quantised, pack4


@dataclass(frozen=True)
class Packed4:
    """4-bit codes of a weight w[K, N] in blocks along K (MatMulNBits' layout): `packed`
    [N, blocks, block / 2] two codes per byte, zero points and scales [N, blocks]."""

    packed: np.ndarray
    zero: np.ndarray
    scale: np.ndarray
    k: int
    signs: np.ndarray | None = None  # codes of R^T w (rotated input axis): w = R . decoded

    @classmethod
    def of(
        cls,
        quantised: Quantised,
        k: int,
        scale_dtype: str = "float32",
        signs: np.ndarray | None = None,
    ) -> Packed4:
        """From `quantize_blocks` / `gptq_blocks` output (zero points None: symmetric, 8);
        scales stored as `scale_dtype` (float16 halves them; widened to float32 in the graph).
        `signs`: the codes are of the weight rotated along K (`embgemma_plugins.maths.rotate`
        with these signs), undone when the int8 columns are built."""
        codes, scale, zero = quantised
        if codes.max(initial=0) > 15 or codes.shape[-1] % 2:
            raise ValueError("Packed4 holds 4-bit codes (0..15) in blocks of even size")
        if zero is None:
            zero = np.full(scale.shape, 8, np.uint8)
        if signs is not None and signs.shape != (k,):
            raise ValueError(f"rotation signs must have shape ({k},), not {signs.shape}")
        rotated = None if signs is None else signs.astype(np.int8)
        return cls(pack4(codes), zero.astype(np.uint8), scale.astype(scale_dtype), k, rotated)

    def int8_columns(self) -> tuple[np.ndarray, np.ndarray]:
        """The int8 per-column weights [K, N] and float32 scales [N] the GEMM gets."""
        return int8_columns(self.packed, self.zero, self.scale, self.k, signs=self.signs)


def unpack_nodes(
    name: str, pack: Packed4, scale_name: str
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes that compute int8 tensor `name` [K, N] from the packed codes; `scale_name` is the
    [N] float32 column-scale initializer the GEMM already reads (shared, not copied)."""
    n, blocks, half = pack.packed.shape
    b = name + "_q4"  # every name below starts so: the runtime drops them by that prefix
    inits = [
        numpy_helper.from_array(pack.packed, b),
        numpy_helper.from_array(pack.zero[..., None], b + "_zero"),
        numpy_helper.from_array(pack.scale[..., None], b + "_scale"),
        numpy_helper.from_array(np.array(15, np.uint8), b + "_mask"),
        numpy_helper.from_array(np.array(4, np.uint8), b + "_four"),
        numpy_helper.from_array(np.array([-1], np.int64), b + "_last"),
        numpy_helper.from_array(np.array([n, blocks, 2 * half], np.int64), b + "_blocks"),
        numpy_helper.from_array(np.array([n, blocks * 2 * half], np.int64), b + "_rows"),
        numpy_helper.from_array(np.array([0], np.int64), b + "_start"),
        numpy_helper.from_array(np.array([pack.k], np.int64), b + "_k"),
        numpy_helper.from_array(np.array([1], np.int64), b + "_axis1"),
        numpy_helper.from_array(np.zeros(n, np.int8), b + "_zero8"),
    ]

    def node(op: str, inputs: list[str], out: str, **attrs: Any) -> onnx.NodeProto:
        outputs = [b + out]
        return helper.make_node(op, [b + i for i in inputs], outputs, name=b + "/" + out, **attrs)

    float32 = {"to": TensorProto.FLOAT}
    nodes = [
        node("BitwiseAnd", ["", "_mask"], "_lo"),
        node("BitShift", ["", "_four"], "_hi", direction="RIGHT"),
        node("Unsqueeze", ["_lo", "_last"], "_lo1"),
        node("Unsqueeze", ["_hi", "_last"], "_hi1"),
        node("Concat", ["_lo1", "_hi1"], "_pairs", axis=-1),  # low nibble first, as pack4
        node("Reshape", ["_pairs", "_blocks"], "_codes"),
        node("Cast", ["_codes"], "_levels", **float32),
        node("Cast", ["_zero"], "_zerof", **float32),
        node("Cast", ["_scale"], "_scalef", **float32),  # a no-op if stored as float32
        node("Sub", ["_levels", "_zerof"], "_centred"),
        node("Mul", ["_centred", "_scalef"], "_wblocks"),
        node("Reshape", ["_wblocks", "_rows"], "_wpad"),
        node("Slice", ["_wpad", "_start", "_k", "_axis1"], "_w"),  # drop the last block's padding
    ]
    if pack.signs is not None:  # rows of w^T back from the rotated basis: (row @ H / sqrt(b)) * s
        block = rotation_block(pack.k)
        inits += [
            numpy_helper.from_array(pack.signs, b + "_signs"),
            numpy_helper.from_array(np.array([n, pack.k // block, block], np.int64), b + "_hb"),
            numpy_helper.from_array(np.array([n, pack.k], np.int64), b + "_rows_k"),
        ]
        nodes += [
            node("Reshape", ["_w", "_hb"], "_wb"),
            helper.make_node("MatMul", [b + "_wb", hadamard_name(block)], [b + "_wm"],
                             name=b + "/_wm"),
            node("Reshape", ["_wm", "_rows_k"], "_wu"),
            node("Cast", ["_signs"], "_signsf", **float32),
            node("Mul", ["_wu", "_signsf"], "_w_back"),
        ]
    nodes.append(node("Transpose", [nodes[-1].output[0][len(b):]], "_wt", perm=[1, 0]))
    nodes.append(
        helper.make_node(
            "QuantizeLinear", [b + "_wt", scale_name, b + "_zero8"], [name], name=b + "/q8", axis=1
        )
    )
    return nodes, inits


def hadamard_name(block: int) -> str:
    """The graph's one [block, block] H / sqrt(block), shared by every rotated weight."""
    return f"packed_hadamard_{block}"


def hadamard_initializer(block: int) -> onnx.TensorProto:
    h = hadamard(block) / np.float32(np.sqrt(block))
    return numpy_helper.from_array(h, hadamard_name(block))


def unpack_weights(model: onnx.ModelProto, packs: dict[str, tuple[Packed4, str]]) -> None:
    """Swap each int8 initializer named in `packs` (name -> its 4-bit codes and the column-scale
    initializer the GEMM reads) for the subgraph that rebuilds it from 4-bit codes, in place.
    Raises if the optimiser has renamed or changed one (the 4-bit codes would not match)."""
    inits = {t.name: t for t in model.graph.initializer}
    nodes, extra = [], []
    for name, (pack, scale_name) in packs.items():
        tensor = inits.get(name)
        if tensor is None or list(tensor.dims) != [pack.k, pack.packed.shape[0]]:
            raise ValueError(f"packed weight {name} is no longer a [K, N] initializer of the graph")
        if scale_name not in inits:
            raise ValueError(f"column scales {scale_name} of {name} are not an initializer")
        new_nodes, new_inits = unpack_nodes(name, pack, scale_name)
        nodes += new_nodes
        extra += new_inits
        if pack.signs is not None and hadamard_name(rotation_block(pack.k)) not in inits:
            shared = hadamard_initializer(rotation_block(pack.k))
            inits[shared.name] = shared
            extra.append(shared)
        model.graph.initializer.remove(tensor)
    model.graph.initializer.extend(extra)
    rest = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes + rest)  # constants first: already in topological order
    if packs:  # what the runtime reads to build these weights itself (embgemma_plugins/unpack4.py)
        model.metadata_props.add(key=PACKED_KEY, value=json.dumps(list(packs)))
