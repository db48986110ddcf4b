"""The flat_heads fusion: q/k/v and attention stay [batch, tokens, heads x dim], the per-head
transposes go, and the vectors are the same (padded batches included)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from embgemma_plugins.onnx_models.build import build_variant
from embgemma_plugins.onnx_models.heads import flat_heads
from embgemma_plugins.onnx_models.recipe import load_recipes
from tests.test_quantize import TEXTS, cosines, embed, ops, without

LAYERS = 4  # the tiny model: 2 query heads, 1 key/value head, head_dim 32


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_every_layer_is_rewritten_and_vectors_are_kept(
    variant: str, tiny_optimum: Path, tokenize, tmp_path: Path
) -> None:
    recipe = load_recipes()[variant]
    assert all("flat_heads" in r.fusions for r in load_recipes().values())
    # every Attention at the top level, not inside banded_attention's If (tests/test_window.py)
    recipe = without(recipe, "banded_attention", "split_queries")
    plain_recipe = without(recipe, "flat_heads")
    fused_path, plain_path = tmp_path / "fused" / "model.onnx", tmp_path / "plain" / "model.onnx"
    calibration = TEXTS * 4 if recipe.calibrated() else None
    build_variant(tiny_optimum, fused_path, recipe, calibration, tokenize)
    build_variant(tiny_optimum, plain_path, plain_recipe, calibration, tokenize)
    fused_ops, plain_ops = ops(fused_path), ops(plain_path)
    # q, k and v into heads-first layout and the output back: four per layer, all gone
    assert plain_ops["Transpose"] - fused_ops["Transpose"] == 4 * LAYERS
    # k, v (one head) and the output need no Reshape; q's normed view goes back to 3-D
    assert plain_ops["Reshape"] - fused_ops["Reshape"] == 2 * LAYERS
    graph = onnx.load(str(fused_path), load_external_data=False).graph
    heads = [
        {a.name: a.i for a in n.attribute if a.name.endswith("num_heads")}
        for n in graph.node
        if n.op_type in ("Attention", "RotaryEmbedding")
    ]
    assert heads.count({"q_num_heads": 2, "kv_num_heads": 1}) == LAYERS
    assert heads.count({"num_heads": 2}) == LAYERS and heads.count({"num_heads": 1}) == LAYERS
    ids = tokenize(["hi", *TEXTS])  # right padding, rows of very different lengths
    fused, plain = embed(fused_path, ids), embed(plain_path, ids)
    assert np.isfinite(fused).all()
    # int8: down_proj's remainder codes (rowwise2) pass float-level differences of the two
    # layouts on instead of rounding them away, and a later row's code can tip over a tie
    # (max|x| / 127). Measured on this model: with down_proj on one-pass codes or MatMulNBits
    # the two graphs give identical vectors; with rowwise2 one row of five differs by 9e-5.
    atol = 1e-5 if variant == "fp32" else 3e-4
    assert cosines(fused, plain).min() >= 0.99999
    assert np.abs(fused - plain).max() < atol
    alone = np.concatenate([embed(fused_path, [row]) for row in ids])
    assert np.abs(alone - fused).max() < atol


def _layer(with_norm: bool, out_shape: list[int]) -> onnx.ModelProto:
    """x [B, T, 4] -> q/k/v heads [B, 2|1|1, T, 2] -> Attention -> Transpose -> Reshape."""
    f, i64 = TensorProto.FLOAT, TensorProto.INT64
    nodes = [helper.make_node("Split", ["x", "sizes"], ["q", "k", "v"], axis=-1)]
    heads = []
    for name in "qkv":
        nodes += [
            helper.make_node("Reshape", [name, "split4"], [name + "4"]),
            helper.make_node("Transpose", [name + "4"], [name + "h"], perm=[0, 2, 1, 3]),
        ]
        heads.append(name + "h")
    if with_norm:
        nodes.append(
            helper.make_node("SimplifiedLayerNormalization", ["qh", "gamma"], ["qn"], axis=-1)
        )
        heads[0] = "qn"
    nodes += [
        helper.make_node("Attention", heads, ["att"], scale=0.5),
        helper.make_node("Transpose", ["att"], ["att_t"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["att_t", "merge"], ["merged"]),
        helper.make_node("Identity", ["merged"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info("x", f, [1, "T", 8])],
        [helper.make_tensor_value_info("y", f, [1, "T", 4])],
        [
            helper.make_tensor("sizes", i64, [3], [4, 2, 2]),
            helper.make_tensor("split4", i64, [4], [0, 0, -1, 2]),
            helper.make_tensor("merge", i64, [3], out_shape),
            helper.make_tensor("gamma", f, [2], [1.0, 0.5]),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])


def test_heads_come_from_the_split_and_results_match() -> None:
    import onnxruntime as ort

    model = _layer(with_norm=True, out_shape=[0, 0, -1])
    plain = model.SerializeToString()
    assert flat_heads(model) == 1
    assert [n.op_type for n in model.graph.node].count("Transpose") == 0
    x = np.random.default_rng(0).standard_normal((1, 5, 8)).astype(np.float32)
    run = [
        ort.InferenceSession(m).run(None, {"x": x})[0] for m in (plain, model.SerializeToString())
    ]
    assert run[0].shape == run[1].shape == (1, 5, 4)
    assert np.abs(run[0] - run[1]).max() < 1e-6


def test_layers_it_cannot_prove_are_left_alone() -> None:
    model = _layer(with_norm=False, out_shape=[0, 0, 4])  # output Reshape not [0, 0, -1]
    before = model.SerializeToString()
    assert flat_heads(model) == 0
    assert model.SerializeToString() == before
