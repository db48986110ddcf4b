"""Store a graph's weight MatMuls and its token-embedding table by a recipe's rules.

`quantise_weights` replaces each target MatMul by the kernel its rule names (MatMulNBits,
DynamicQuantizeMatMul, the per-row int8 GEMM of onnx_models/rowwise.py, with 4-bit codes
widened to int8 columns) and the embedding Gather by its quantised lookup.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import numpy_helper

from embgemma_plugins.maths import rotate

from . import graph as G
from .blockquant import (
    Quantised,
    blocks_along_k,
    dynamic_matmul,
    gather_block_quantized,
    matmul_nbits,
    nbits_error,
    quantize_blocks,
)
from .gptq import gptq_blocks
from .packed import Packed4
from .recipe import MatMulRule, Recipe
from .rowwise import quantise_rows, remainder_rows, rowwise_matmul
from .smoothing import Stats
from .vqtable import load_codebook, rotation_signs, vq_gather


def weight_error(recipe: Recipe) -> Callable[[onnx.NodeProto, np.ndarray, np.ndarray], float]:
    """Error of storing a weight by its node's rule (the smoothing search objective)."""

    def error(node: onnx.NodeProto, w: np.ndarray, importance: np.ndarray) -> float:
        rule = recipe.rule_for(node.name)
        if rule is None or not rule.blockwise:
            return 0.0
        return nbits_error(w, rule.bits, rule.block_size, rule.symmetric, importance)

    return error


def quantise_weights(
    model: onnx.ModelProto,
    recipe: Recipe,
    stats: Stats | None = None,
    packs: dict[str, tuple[Packed4, str]] | None = None,
) -> int:
    """Replace the weight MatMuls (by the recipe's rules) and the embedding Gather, in place.
    Returns the number of nodes replaced. Weights a rule rounds to 4-bit codes for the per-row
    GEMM are written as int8 columns (the same values) and, if `packs` is given, recorded there
    (int8 initializer -> codes, column scales) for `unpack_weights` to store as 4-bit."""
    inits = G.initializers(model)
    graph_inputs = {i.name for i in model.graph.input}
    nodes, replaced = [], 0
    rows: dict[str, tuple[str, str, str]] = {}  # input -> its row codes, steps, zero points
    remainders: dict[str, str] = {}  # input tensor -> its row remainder's codes
    zero: str | None = None  # the row-shaped zero points, shared by every quantised input
    for node in model.graph.node:
        new, extra = node, list[onnx.TensorProto]()
        rule = (
            recipe.rule_for(node.name)
            if node.op_type == "MatMul"
            and node.input[1] in inits
            and len(inits[node.input[1]].dims) == 2
            else None
        )
        if rule is not None and rule.kernel != "fp32":
            w = numpy_helper.to_array(inits[node.input[1]])
            if rule.kernel == "nbits":
                new, extra = _nbits(node, w, rule, stats)
            elif rule.kernel == "dynamic":
                new, extra = dynamic_matmul(node, w)
            else:  # rowwise, rowwise2
                x = node.input[0]
                if x not in rows:  # the first MatMul of a shared input quantises it
                    q_nodes, q_inits, codes, step, zero = quantise_rows(x, w.shape[0], zero)
                    rows[x] = (codes, step, zero)
                    nodes.extend(q_nodes)
                    model.graph.initializer.extend(q_inits)
                rest = None
                if rule.kernel == "rowwise2":  # the remainder's codes, shared like the rows'
                    if x not in remainders:
                        r_nodes, r_inits, remainders[x] = remainder_rows(x, w.shape[0], *rows[x])
                        nodes.extend(r_nodes)
                        model.graph.initializer.extend(r_inits)
                    rest = remainders[x]
                columns = None
                if rule.packed:  # 4-bit codes, widened to the GEMM's int8 columns
                    signs = rotation_signs(w.shape[0]) if rule.rotate else None
                    rounded = _block_codes(node, w, rule, stats, signs)
                    pack = Packed4.of(rounded, w.shape[0], rule.scale_dtype, signs)
                    columns = pack.int8_columns()
                mm_nodes, extra = rowwise_matmul(node, w, *rows[x][:2], rest, columns)
                if columns is not None and packs is not None:  # extra: weights, scales, ...
                    packs[extra[0].name] = (pack, extra[1].name)
                nodes.extend(mm_nodes[:-1])
                new = mm_nodes[-1]
        elif (
            node.op_type == "Gather"
            and recipe.embedding
            and _is_embedding(node, inits, graph_inputs)
        ):
            e = recipe.embedding
            table = numpy_helper.to_array(inits[node.input[0]])
            if e.format == "vq3":
                vq_nodes, extra = vq_gather(node, table, load_codebook(), e.scale_search)
                G.require_opset(model, 18)  # BitwiseAnd / BitwiseOr unpack the codes
                nodes.extend(vq_nodes[:-1])
                new = vq_nodes[-1]
            else:
                new, extra = gather_block_quantized(
                    node, table, e.bits, e.block_size, e.symmetric, e.scale_search
                )
                if e.scale_dtype == "float16":
                    nodes.append(new)
                    new = _half_scales(new, extra)  # the Cast after the gather
        nodes.append(new)
        model.graph.initializer.extend(extra)
        replaced += new is not node
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    if zero is not None:
        G.require_opset(model, 21)  # the rows' block-wise QuantizeLinear
    if replaced:
        G.ensure_ms_domain(model)
    G.prune(model)
    return replaced


def _block_codes(
    node: onnx.NodeProto,
    w: np.ndarray,
    rule: MatMulRule,
    stats: Stats | None,
    signs: np.ndarray | None = None,
) -> Quantised:
    """`rule`'s block-wise codes of one weight MatMul (calibrated rules read `stats`). With
    `signs`, the codes are of R^T w: w rotated along its input axis (`maths.rotate`); the
    calibration statistics are rotated alike (H -> R^T H R), so GPTQ sees the same problem."""
    seen = stats.get(node.input[0]) if stats else None
    if signs is not None:
        w = rotate(w.T, signs).T
        seen = None if seen is None else seen.rotated(signs)
    if rule.gptq:
        if seen is None or seen.hessian is None:
            raise ValueError(f"GPTQ on {node.name} needs calibration Hessians")
        return gptq_blocks(
            w,
            seen.hessian,
            rule.bits,
            rule.block_size,
            rule.symmetric,
            rule.scale_search,
            act_order=rule.act_order,
        )
    importance = None
    if seen is not None and rule.scale_search:
        importance = blocks_along_k(seen.mean_sq[:, None].astype(np.float32), rule.block_size)
    blocks = blocks_along_k(w, rule.block_size)
    return quantize_blocks(blocks, rule.bits, rule.symmetric, rule.scale_search, importance)


def _nbits(
    node: onnx.NodeProto, w: np.ndarray, rule: MatMulRule, stats: Stats | None
) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    """MatMulNBits for one weight MatMul by `rule` (calibrated rules read `stats`)."""
    codes = _block_codes(node, w, rule, stats)
    return matmul_nbits(
        node, w, rule.bits, rule.block_size, rule.symmetric, rule.accuracy_level, codes=codes
    )


def _half_scales(gather: onnx.NodeProto, inits: list[onnx.TensorProto]) -> onnx.NodeProto:
    """Store a GatherBlockQuantized's scales as float16; returns the Cast to float32 that must
    follow it (the gather then outputs float16 rows, consumed only by that Cast)."""
    for tensor in inits:
        if tensor.name == gather.input[2]:
            half = numpy_helper.to_array(tensor).astype(np.float16)
            tensor.CopyFrom(numpy_helper.from_array(half, tensor.name))
    out = gather.output[0]
    gather.output[0] = out + "_f16"
    return onnx.helper.make_node("Cast", [gather.output[0]], [out], to=onnx.TensorProto.FLOAT)


def _is_embedding(
    node: onnx.NodeProto, inits: dict[str, onnx.TensorProto], graph_inputs: set[str]
) -> bool:
    """The token-embedding lookup: Gather from a constant 2-D table by a graph input (input_ids)."""
    table = inits.get(node.input[0])
    return table is not None and len(table.dims) == 2 and node.input[1] in graph_inputs
