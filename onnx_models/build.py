"""Build a variant's graph from the fp32 Optimum export by its recipe (the one code path).

  keep the recipe's outputs -> fold the Dense head -> add token_states (if listed: late
  chunking) -> calibrate (activation statistics, Hessians) and smooth -> the float-graph
  passes (fast_gelu, merge_matmuls) -> quantise the weight MatMuls and the embedding table
  -> ONNX Runtime's offline optimisation -> the late passes in the recipe's order
  (skip_rms_norm, attention, lean_shapes, rotary, flat_heads, row_steps, banded_attention,
  split_queries: onnx_models/passes.py) -> 4-bit codes stored as such -> save (weights in
  one external data file beside the model).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import onnx

from embgemma_plugins.session import TOKEN_STATES

from . import graph as G
from .optimize import ort_optimize
from .packed import Packed4, unpack_weights
from .passes import PASSES
from .quantize import quantise_weights, weight_error
from .recipe import Recipe
from .smoothing import Stats, activation_stats, smooth
from .token_states import add_token_states, share_head_weights

Tokenize = Callable[[Sequence[str]], list[list[int]]]


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
    if TOKEN_STATES in recipe.outputs:  # after the fold: one head MatMul per token
        add_token_states(model)
    stats = None
    if recipe.calibrated():
        if not calibration:
            raise ValueError(f"recipe {recipe.name} needs calibration texts")
        stats = calibrate(model, recipe, calibration, tokenize)
        smooth(model, recipe.smoothing, stats, weight_error(recipe))
    for name in recipe.fusions:  # after calibration: a merged MatMul reads the same input
        if not PASSES[name].late:
            PASSES[name].run(model, recipe)
    packs: dict[str, tuple[Packed4, str]] = {}
    quantise_weights(model, recipe, stats, packs)
    share_head_weights(model)  # token_states' head: one copy of a quantised head's weights
    model = ort_optimize(model, recipe.optimization)
    for name in recipe.fusions:  # in the order listed (Recipe checks it against `after`)
        if PASSES[name].late:
            PASSES[name].run(model, recipe)
    unpack_weights(model, packs)  # last: the optimiser would fold the 4-bit codes back to int8
    G.save(model, Path(out_model))
