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

import tempfile
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
    model: onnx.ModelProto | Path,
    recipe: Recipe,
    texts: Sequence[str],
    tokenize: Tokenize,
    done: Callable[[int], None] | None = None,
) -> Stats:
    """Per-channel statistics, on the calibration texts, of every target MatMul input that a
    rule's rounding or a smoothing reads (token rows only: the pooled Dense head's input,
    one row per text, needs none). `model`: a graph, or a file saved with `G.save`."""
    graph = onnx.load(str(model), load_external_data=False) if isinstance(model, Path) else model
    tensors = sorted({n.input[0] for n in G.weight_matmuls(graph) if recipe.reads_stats(n.name)})
    del graph
    return activation_stats(
        model,
        tensors,
        tokenize(list(texts)[: recipe.calibration_samples]),
        hessians=recipe.needs_hessians(),
        done=done,
    )


def park(model: onnx.ModelProto, path: Path) -> Path:
    """Save `model` (weights in `path`.data); the caller drops its last reference, which is
    what frees the memory (protobuf keeps cleared fields' memory until the message goes), so
    an ONNX Runtime session then runs beside no copy of the graph."""
    G.save(model, path)
    return path


def build_variant(
    fp32_model: Path,
    out_model: Path,
    recipe: Recipe,
    calibration: Sequence[str] | None,
    tokenize: Tokenize,
    done: Callable[[int], None] | None = None,
) -> None:
    """Write `out_model` (+ `out_model.data` beside it) from the fp32 Optimum export by `recipe`.
    Inputs stay input_ids/attention_mask; outputs are `recipe.outputs`. `calibration`: texts as
    the model sees them (prompts included), never the fidelity corpus; needed when
    `recipe.calibrated()`; `done(n)` after each calibration batch of `n` texts.

    The graph is held in memory only while it is edited: around the calibration session and
    ONNX Runtime's optimiser it waits on disk (`park`), beside `out_model`."""
    if recipe.calibrated() and not calibration:
        raise ValueError(f"recipe {recipe.name} needs calibration texts")
    model = G.load(Path(fp32_model))
    G.keep_outputs(model, list(recipe.outputs))
    if recipe.fold_dense_head:
        G.fold_dense_head(model)
    if TOKEN_STATES in recipe.outputs:  # after the fold: one head MatMul per token
        add_token_states(model)
    Path(out_model).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=Path(out_model).parent) as tmp:
        stats = None
        if recipe.calibrated():
            folded = park(model, Path(tmp) / "folded.onnx")
            del model
            stats = calibrate(folded, recipe, calibration or [], tokenize, done)
            model = G.load(folded)
            smooth(model, recipe.smoothing, stats, weight_error(recipe))
        for name in recipe.fusions:  # after calibration: a merged MatMul reads the same input
            if not PASSES[name].late:
                PASSES[name].run(model, recipe)
        packs: dict[str, tuple[Packed4, str]] = {}
        quantise_weights(model, recipe, stats, packs)
        share_head_weights(model)  # token_states' head: one copy of a quantised head's weights
        quantised = park(model, Path(tmp) / "quantised.onnx")
        del model
        model = ort_optimize(quantised, recipe.optimization)
    for name in recipe.fusions:  # in the order listed (Recipe checks it against `after`)
        if PASSES[name].late:
            PASSES[name].run(model, recipe)
    unpack_weights(model, packs)  # last: the optimiser would fold the 4-bit codes back to int8
    G.save(model, Path(out_model))
