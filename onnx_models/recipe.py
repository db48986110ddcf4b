"""A variant's build recipe: how its weight MatMuls, embedding table and graph are stored.

Recipes are data: the tables of ``embgemma_plugins/store/recipes.toml`` (the variant
registry), minus the keys the runtime reads. ``onnx_models/build.py`` applies one.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from embgemma_plugins.store import registry

from . import graph as G
from .optimize import LEVELS
from .passes import order_problems

ROWWISE = ("rowwise", "rowwise2")
KERNELS = ("nbits", "dynamic", *ROWWISE, "fp32")


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
        problems += order_problems(self.fusions)
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


def load_recipes(path: Path | None = None) -> dict[str, Recipe]:
    """Every variant's recipe, by name: the tables of the registry's recipes file (or of
    ``path``), without the keys the runtime reads (``REGISTRY_KEYS``)."""
    found = registry.load(path) if path else registry.registry()
    return {
        name: _recipe(name, {k: v for k, v in v.table.items() if k not in registry.REGISTRY_KEYS})
        for name, v in found.items()
    }
