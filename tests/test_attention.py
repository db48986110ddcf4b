"""The attention fusion: every layer's exported attention becomes one ONNX Attention node
with the same vectors, padded batches included (the rows a sliding window masks entirely)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from embgemma_plugins.onnx_models import graph as G
from embgemma_plugins.onnx_models.attention import ATTENTION_OPSET, attention
from embgemma_plugins.onnx_models.build import build_variant
from embgemma_plugins.onnx_models.recipe import load_recipes
from tests.test_quantize import TEXTS, cosines, embed, ops, without
from tests.tiny_model import SLIDING_WINDOW


def test_every_layer_is_fused_and_vectors_are_kept(
    tiny_optimum: Path, tokenize, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    fp32 = load_recipes()["fp32"]
    assert "attention" in fp32.fusions
    # banded_attention (tests/test_window.py) wraps sliding layers in an If; this is about one layer
    fp32 = without(fp32, "banded_attention", "split_queries")
    unfused = without(fp32, "attention")
    fused_path, plain_path = tmp_path / "fused" / "model.onnx", tmp_path / "plain" / "model.onnx"
    build_variant(tiny_optimum, fused_path, fp32, None, tokenize)
    build_variant(tiny_optimum, plain_path, unfused, None, tokenize)
    fused_ops, plain_ops = ops(fused_path), ops(plain_path)
    assert fused_ops["Attention"] == 4 and plain_ops["Softmax"] == 4  # the tiny model's 4 layers
    assert fused_ops["Softmax"] == fused_ops["IsNaN"] == fused_ops["FusedMatMul"] == 0
    model = onnx.load(str(fused_path), load_external_data=False)
    assert next(o.version for o in model.opset_import if o.domain == "") == ATTENTION_OPSET
    # repeat_kv's copies of the one KV head are gone: Attention shares it among the query heads
    assert plain_ops["Expand"] >= 2 * 4 and fused_ops["Expand"] == plain_ops["Expand"] - 2 * 4
    prod = G.producers(model)
    for node in (n for n in model.graph.node if n.op_type == "Attention"):
        assert all(prod[kv].op_type != "Reshape" for kv in node.input[1:3])
    # One short text padded to long ones: its padding rows lie outside every window.
    ids = tokenize(["hi", *TEXTS])
    assert max(map(len, ids)) - len(ids[0]) > 2 * SLIDING_WINDOW
    fused, plain = embed(fused_path, ids), embed(plain_path, ids)
    assert np.isfinite(fused).all()
    assert cosines(fused, plain).min() >= 0.99999
    assert cosines(fused, embed(tiny_optimum, ids)).min() >= 0.99999


def _chain(extra_output: bool) -> onnx.ModelProto:
    """The exporter's attention on 4-D q/k/v and a boolean mask, as a model of its own."""
    f = TensorProto.FLOAT
    nodes = [
        helper.make_node("Where", ["mask", "zero", "neg_inf"], ["bias"]),
        helper.make_node(
            "FusedMatMul", ["q", "k"], ["s"], domain="com.microsoft", transB=1, alpha=0.25
        ),
        helper.make_node("Add", ["s", "bias"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["p"], axis=-1),
        helper.make_node("IsNaN", ["p"], ["nan"]),
        helper.make_node("Where", ["nan", "zero", "p"], ["p0"]),
        helper.make_node("MatMul", ["p0", "v"], ["out"]),
    ]
    shape = [1, 2, "T", 16]
    outputs = [helper.make_tensor_value_info("out", f, shape)]
    if extra_output:
        outputs.append(helper.make_tensor_value_info("p", f, None))
    graph = helper.make_graph(
        nodes,
        "attention",
        [helper.make_tensor_value_info(n, f, shape) for n in ("q", "k", "v")]
        + [helper.make_tensor_value_info("mask", TensorProto.BOOL, [1, 1, "T", "T"])],
        outputs,
        [
            helper.make_tensor("zero", f, [], [0.0]),
            helper.make_tensor("neg_inf", f, [], [-np.inf]),
        ],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    )


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["out"], feeds)[0])


def test_fused_attention_matches_the_chain_and_zeroes_rows_with_no_key() -> None:
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal((1, 2, 6, 16)).astype(np.float32) for n in ("q", "k", "v")}
    mask = np.abs(np.arange(6)[:, None] - np.arange(6)[None, :]) < 2
    mask[:, 4:] = False  # two padded keys: rows 4 and 5 see no key at all
    mask[4:, :] = False
    feeds["mask"] = mask[None, None]
    chain = _chain(extra_output=False)
    expected = _run(chain, feeds)
    fused = _chain(extra_output=False)
    assert attention(fused) == 1
    assert [n.op_type for n in fused.graph.node] == ["Attention"]
    assert list(fused.graph.node[0].input) == ["q", "k", "v", "mask"]  # the bool mask as is
    got = _run(fused, feeds)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_array_equal(got[0, :, 4:], 0.0)


@pytest.mark.parametrize("extra_output", [False, True], ids=["q transposed", "softmax output"])
def test_chains_that_differ_are_left_alone(extra_output: bool) -> None:
    """A softmax that is also a graph output, or scores not computed as q @ k^T."""
    model = _chain(extra_output=extra_output)
    if not extra_output:
        scores = next(n for n in model.graph.node if n.op_type == "FusedMatMul")
        scores.attribute.append(helper.make_attribute("transA", 1))
    before = [n.op_type for n in model.graph.node]
    assert attention(model) == 0
    assert [n.op_type for n in model.graph.node] == before


def test_an_additive_mask_that_is_not_boolean_is_passed_as_floats() -> None:
    model = _chain(extra_output=False)
    model.graph.initializer[1].CopyFrom(helper.make_tensor("neg_inf", TensorProto.FLOAT, [], [-1]))
    assert attention(model) == 1
    assert model.graph.node[-1].input[3] == "bias"  # Where(mask, 0, -1), not the bool mask
