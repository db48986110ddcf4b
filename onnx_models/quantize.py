"""Quantisation + graph-optimisation recipes for the EmbeddingGemma ONNX export.

Recipes are data (`recipes.toml`, one table per variant); `build_variant` is the one code path
that applies any of them to the fp32 Optimum export:

  keep `sentence_embedding` only -> fold the Dense head -> calibrate + smooth -> fuse GELU
  -> quantise MatMul weights and the embedding table -> ORT offline optimisation
  -> fuse Add+RMSNorm -> save (weights in one external data file beside the model).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from embgemma_plugins.maths import rotate

from . import fusions
from . import graph as G
from .attention import attention
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
from .heads import flat_heads
from .optimize import LEVELS, ort_optimize
from .packed import Packed4, unpack_weights
from .rotary import rotary
from .rowsteps import row_steps
from .rowwise import quantise_rows, remainder_rows, rowwise_matmul
from .shapes import lean_shapes
from .smoothing import Stats, activation_stats, smooth
from .split import split_queries
from .vqtable import load_codebook, rotation_signs, vq_gather
from .window import banded_attention

RECIPES = Path(__file__).with_name("recipes.toml")
ROWWISE = ("rowwise", "rowwise2")
KERNELS = ("nbits", "dynamic", *ROWWISE, "fp32")
EARLY_FUSIONS: dict[str, Callable[[onnx.ModelProto, Recipe], int]] = {  # on the float graph
    "fast_gelu": lambda model, _recipe: fusions.fast_gelu(model),
    "merge_matmuls": lambda model, recipe: fusions.merge_matmuls(model, recipe.rule_for),
}
LATE_FUSIONS = {  # need ORT's own fusions first (RMSNorm, FusedMatMul); run in this order
    "skip_rms_norm": fusions.skip_rms_norm,
    "attention": attention,
    "lean_shapes": lean_shapes,  # after attention, which reads the exporter's shape chains
    "rotary": rotary,  # after lean_shapes, which makes the Slice bounds it checks constants
    "flat_heads": flat_heads,  # after rotary and attention, whose 4-D nodes it matches
    "row_steps": row_steps,  # after flat_heads: q/k reach their norms through its Reshapes
    "banded_attention": banded_attention,  # wraps the sliding layers' Attention in an If
    "split_queries": split_queries,  # last: wraps every Attention a batch of one reaches
}
Tokenize = Callable[[Sequence[str]], list[list[int]]]


@dataclass(frozen=True)
class MatMulRule:
    """How one group of weight MatMuls is stored and computed.

    kernel "nbits": MatMulNBits, `bits`-bit weights in blocks of `block_size` along the input
    axis; accuracy_level 4 computes in int8 with activations quantised per row and block.
    kernel "dynamic": DynamicQuantizeMatMul, int8 per-column weights, one activation scale per
    tensor (fast VNNI GEMM, but see docs/variants.md for its drift). kernel "rowwise": the same
    GEMM with one activation scale per token row (onnx_models/rowwise.py); int8 per-column
    weights, or with bits 4, weights rounded to 4-bit blocks like "nbits" and stored so
    (onnx_models/packed.py), widened to int8 columns when the model loads. kernel
    "rowwise2": rowwise plus a second GEMM of the row codes' rounding remainder (about 15-bit
    activations, for inputs with channel outliers). kernel "fp32": unchanged.
    scale_search > 0: try that many clipped ranges per block, keep the one with the least error
    weighted by the calibration mean x**2 of each input channel. gptq: round with GPTQ's
    error compensation against the calibration Hessian (onnx_models/gptq.py); act_order: GPTQ
    rounds the channels with the largest mean x**2 first."""

    kernel: str = "nbits"
    bits: int = 8
    block_size: int = 32
    symmetric: bool = True
    accuracy_level: int = 4
    scale_search: int = 0
    gptq: bool = False
    act_order: bool = False
    scale_dtype: str = "float32"  # 4-bit rowwise codes: "float16" halves the block scales
    # 4-bit rowwise codes of the weight rotated along its input axis (Hadamard blocks, random
    # signs): outliers spread over 64 channels before rounding; undone when the model loads.
    rotate: bool = False

    @property
    def packed(self) -> bool:
        """4-bit block codes on disk, widened to int8 columns for the per-row GEMM."""
        return self.kernel in ROWWISE and self.bits == 4

    @property
    def blockwise(self) -> bool:
        """Weights rounded in blocks along the input axis (the rounding keys apply)."""
        return self.kernel == "nbits" or self.packed


@dataclass(frozen=True)
class EmbeddingRule:
    """Storage of the token-embedding table: format "blocks" is GatherBlockQuantized (`bits`
    in blocks along the hidden axis); "vq3" is rotated rows, one float16 scale each, and
    12-bit codes of value triples (onnx_models/vqtable.py: 4.02 bits a weight; `scale_search`
    row scales tried per row; bits, block_size, symmetric and scale_dtype do not apply)."""

    format: str = "blocks"
    bits: int = 8
    block_size: int = 128
    symmetric: bool = True
    scale_search: int = 0
    # "float16" halves the scales' size (6 MB for the 4-bit table, block 64); the looked-up
    # rows are cast back to float32 at once, so no activation is ever fp16.
    scale_dtype: str = "float32"


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str = ""
    targets: str = r"/layers\.\d+/"  # node-name regex of MatMuls the rules cover
    matmul: MatMulRule = field(default_factory=lambda: MatMulRule(kernel="fp32"))
    overrides: tuple[tuple[str, MatMulRule], ...] = ()  # (node-name regex, rule); first match wins
    embedding: EmbeddingRule | None = None
    smoothing: tuple[tuple[str, float | None], ...] = ()  # (node-name regex, alpha; None = search)
    calibration_samples: int = 0
    fold_dense_head: bool = True
    outputs: tuple[str, ...] = (G.SENTENCE_OUTPUT,)
    fusions: tuple[str, ...] = ("fast_gelu", "skip_rms_norm")
    optimization: str = "extended"

    def __post_init__(self) -> None:
        problems = [f"unknown kernel {r.kernel!r}" for r in self.rules() if r.kernel not in KERNELS]
        problems += [
            f"kernel {r.kernel} takes bits 8 or 4, not {r.bits}"
            for r in self.rules()
            if r.kernel in ROWWISE and r.bits not in (4, 8)
        ]
        if self.optimization not in LEVELS:
            problems.append(f"optimization must be one of {LEVELS}")
        problems += [
            f"unknown fusion {f!r}" for f in self.fusions if f not in EARLY_FUSIONS | LATE_FUSIONS
        ]
        if self.embedding and self.embedding.scale_dtype not in ("float32", "float16"):
            problems.append("embedding scale_dtype must be float32 or float16")
        if self.embedding and self.embedding.format not in ("blocks", "vq3"):
            problems.append("embedding format must be blocks or vq3")
        problems += [
            f"scale_dtype {r.scale_dtype} needs kernel rowwise(2) with bits 4 (float16 only)"
            for r in self.rules()
            if r.scale_dtype != "float32" and not (r.scale_dtype == "float16" and r.packed)
        ]
        problems += [
            "rotate needs 4-bit codes run as int8 (kernel rowwise or rowwise2, bits 4)"
            for r in self.rules()
            if r.rotate and not r.packed
        ]
        if self.calibrated() and self.calibration_samples <= 0:
            problems.append("smoothing and scale_search need calibration_samples > 0")
        if problems:
            raise ValueError(f"recipe {self.name}: " + "; ".join(problems))

    def rules(self) -> list[MatMulRule]:
        return [self.matmul, *(rule for _, rule in self.overrides)]

    def calibrated(self) -> bool:
        return bool(self.smoothing) or any(
            r.blockwise and (r.scale_search or r.gptq) for r in self.rules()
        )

    def reads_stats(self, node_name: str) -> bool:
        """Whether storing this MatMul reads calibration statistics of its input."""
        rule = self.rule_for(node_name)
        if rule is None:
            return False
        smoothed = any(re.search(pattern, node_name) for pattern, _ in self.smoothing)
        return smoothed or (rule.blockwise and bool(rule.scale_search or rule.gptq))

    def needs_hessians(self) -> bool:
        return any(r.blockwise and r.gptq for r in self.rules())

    def rule_for(self, node_name: str) -> MatMulRule | None:
        """The rule for a weight MatMul (None: not a target, stays fp32)."""
        if not re.search(self.targets, node_name):
            return None
        return next(
            (rule for pattern, rule in self.overrides if re.search(pattern, node_name)), self.matmul
        )

    def record(self) -> dict[str, Any]:
        """Plain-data description for the variant manifest."""
        return asdict(self)


def _recipe(name: str, table: dict[str, Any]) -> Recipe:
    table = dict(table)
    if "matmul" in table:
        table["matmul"] = MatMulRule(**table["matmul"])
    if "embedding" in table:
        table["embedding"] = EmbeddingRule(**table["embedding"])
    table["overrides"] = tuple(
        (o.pop("pattern"), MatMulRule(**o)) for o in map(dict, table.get("overrides", []))
    )
    table["smoothing"] = tuple(
        (s["pattern"], None if s["alpha"] == "search" else float(s["alpha"]))
        for s in table.get("smoothing", [])
    )
    for key in ("outputs", "fusions"):
        if key in table:
            table[key] = tuple(table[key])
    return Recipe(name=name, **table)


def _toml() -> Any:
    """tomllib (Python 3.11+) or its backport tomli, which the extras install on 3.10."""
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib


def load_recipes(path: Path = RECIPES) -> dict[str, Recipe]:
    """Every recipe in `recipes.toml`, by variant name."""
    with open(path, "rb") as f:
        return {name: _recipe(name, table) for name, table in _toml().load(f).items()}


def _weight_error(recipe: Recipe) -> Callable[[onnx.NodeProto, np.ndarray, np.ndarray], float]:
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


def calibrate(
    model: onnx.ModelProto, recipe: Recipe, texts: Sequence[str], tokenize: Tokenize
) -> Stats:
    """Per-channel statistics, on the calibration texts, of every target MatMul input that a
    rule's rounding or a smoothing reads (token rows only: the pooled Dense head's input,
    one row per text, needs none)."""
    tensors = sorted({n.input[0] for n in G.weight_matmuls(model) if recipe.reads_stats(n.name)})
    return activation_stats(
        model,
        tensors,
        tokenize(list(texts)[: recipe.calibration_samples]),
        hessians=recipe.needs_hessians(),
    )


def build_variant(
    fp32_model: Path,
    out_model: Path,
    recipe: Recipe,
    calibration: Sequence[str] | None,
    tokenize: Tokenize,
) -> None:
    """Write `out_model` (+ `out_model.data` beside it) from the fp32 Optimum export by `recipe`.
    Inputs stay input_ids/attention_mask; outputs are `recipe.outputs`. `calibration`: texts as
    the model sees them (prompts included), never the fidelity corpus; needed when
    `recipe.calibrated()`."""
    model = G.load(Path(fp32_model))
    G.keep_outputs(model, list(recipe.outputs))
    if recipe.fold_dense_head:
        G.fold_dense_head(model)
    stats = None
    if recipe.calibrated():
        if not calibration:
            raise ValueError(f"recipe {recipe.name} needs calibration texts")
        stats = calibrate(model, recipe, calibration, tokenize)
        smooth(model, recipe.smoothing, stats, _weight_error(recipe))
    for name in recipe.fusions:  # after calibration: a merged MatMul reads the same input
        if name in EARLY_FUSIONS:
            EARLY_FUSIONS[name](model, recipe)
    packs: dict[str, tuple[Packed4, str]] = {}
    quantise_weights(model, recipe, stats, packs)
    model = ort_optimize(model, recipe.optimization)
    for name, fuse in LATE_FUSIONS.items():
        if name in recipe.fusions:
            fuse(model)
    unpack_weights(model, packs)  # last: the optimiser would fold the 4-bit codes back to int8
    G.save(model, Path(out_model))
