"""The rotary fusion: each layer's rotate-half rotary embedding of q and k becomes one ONNX
RotaryEmbedding, with the same vectors, padded batches included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from embgemma_plugins.onnx_models.build import build_variant
from embgemma_plugins.onnx_models.recipe import load_recipes
from embgemma_plugins.onnx_models.rotary import ROTARY_OPSET, rotary
from tests.test_quantize import TEXTS, cosines, embed, ops, without


def test_q_and_k_of_every_layer_are_fused_and_vectors_are_kept(
    tiny_optimum: Path, tokenize, tmp_path: Path
) -> None:
    # without banded_attention, whose plan (Concats among them) needs flat_heads, which needs rotary
    fp32 = without(load_recipes()["fp32"], "banded_attention", "split_queries")
    assert all("rotary" in r.fusions for r in load_recipes().values())
    plain_recipe = without(fp32, "rotary")
    fused_path, plain_path = tmp_path / "fused" / "model.onnx", tmp_path / "plain" / "model.onnx"
    build_variant(tiny_optimum, fused_path, fp32, None, tokenize)
    build_variant(tiny_optimum, plain_path, plain_recipe, None, tokenize)
    fused_ops, plain_ops = ops(fused_path), ops(plain_path)
    assert fused_ops["RotaryEmbedding"] == 2 * 4  # q and k of the tiny model's 4 layers
    assert plain_ops["Neg"] == 2 * 4 and fused_ops["Neg"] == 0
    # rotate_half's Concat per q and k, and each rotary kind's Concat(freqs, freqs) (2 kinds)
    assert fused_ops["Concat"] == plain_ops["Concat"] - 2 * 4 - 2
    model = onnx.load(str(fused_path), load_external_data=False)
    assert next(o.version for o in model.opset_import if o.domain == "") >= ROTARY_OPSET
    ids = tokenize(["hi", *TEXTS])  # right padding: positions 0.. in every row
    fused, plain = embed(fused_path, ids), embed(plain_path, ids)
    assert np.isfinite(fused).all()
    assert cosines(fused, plain).min() >= 0.99999
    assert np.abs(fused - plain).max() < 1e-5
    alone = np.concatenate([embed(fused_path, [row]) for row in ids])
    assert np.abs(alone - fused).max() < 1e-5  # each text alone: the same vector


def _rotate_half(swap: bool) -> onnx.ModelProto:
    """x*cos + rotate_half(x)*sin on [1, 2, T, 8] with the exporter's table chain; `swap`
    writes the sine product first and puts the halves' Slice in the other order of inputs."""
    f, i64 = TensorProto.FLOAT, TensorProto.INT64
    nodes = [
        helper.make_node("MatMul", ["inv", "pos"], ["freqs"]),
        helper.make_node("Concat", ["freqs", "freqs"], ["emb"], axis=1),
        helper.make_node("Transpose", ["emb"], ["emb_t"], perm=[0, 2, 1]),
        *[
            node
            for trig in ("Cos", "Sin")
            for node in (
                helper.make_node(trig, ["emb_t"], [trig + "_o"]),
                helper.make_node("Unsqueeze", [trig + "_o", "one"], [trig.lower()]),
            )
        ],
        helper.make_node("Slice", ["x", "zero", "half", "last"], ["x1"]),
        helper.make_node("Slice", ["x", "half", "big", "last"], ["x2"]),
        helper.make_node("Neg", ["x2"], ["nx2"]),
        helper.make_node("Concat", ["nx2", "x1"], ["rot"], axis=-1),
        helper.make_node("Mul", ["x", "cos"] if not swap else ["cos", "x"], ["a"]),
        helper.make_node("Mul", ["rot", "sin"] if not swap else ["sin", "rot"], ["b"]),
        helper.make_node("Add", ["a", "b"] if not swap else ["b", "a"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "rotary",
        [
            helper.make_tensor_value_info("input_ids", i64, [1, "T"]),
            helper.make_tensor_value_info("x", f, [1, 2, "T", 8]),
            helper.make_tensor_value_info("pos", f, [1, 1, "T"]),
        ],
        [helper.make_tensor_value_info("out", f, [1, 2, "T", 8])],
        [
            helper.make_tensor("inv", f, [1, 4, 1], (1.0 / 10000 ** (np.arange(4) / 4)).tolist()),
            *[
                helper.make_tensor(n, i64, [1], [v])
                for n, v in (("zero", 0), ("half", 4), ("big", 2**62), ("last", -1), ("one", 1))
            ],
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_the_chain_is_matched_in_either_operand_order_and_computes_the_same() -> None:
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((1, 2, 5, 8)).astype(np.float32)
    feeds = {"input_ids": np.zeros((1, 5), np.int64), "x": x}
    feeds["pos"] = np.arange(5, dtype=np.float32).reshape(1, 1, 5)
    for swap in (False, True):
        model = _rotate_half(swap)
        want = ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
        assert rotary(model) == 1
        assert [n.op_type for n in model.graph.node].count("RotaryEmbedding") == 1
        assert "Neg" not in [n.op_type for n in model.graph.node]
        got = ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_a_slice_that_is_not_half_and_half_is_left_alone() -> None:
    model = _rotate_half(False)
    for init in model.graph.initializer:
        if init.name == "half":
            init.CopyFrom(helper.make_tensor("half", TensorProto.INT64, [1], [3]))
    before = [n.op_type for n in model.graph.node]
    assert rotary(model) == 0
    assert [n.op_type for n in model.graph.node] == before
