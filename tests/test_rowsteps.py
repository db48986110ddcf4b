"""The row_steps fusion: the per-row GEMMs' output scaling goes where an RMSNorm undoes it,
and the vectors are the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from embgemma_plugins.onnx_models.build import build_variant
from embgemma_plugins.onnx_models.recipe import load_recipes
from embgemma_plugins.onnx_models.rowsteps import row_steps
from tests.test_quantize import TEXTS, cosines, embed, ops, without

LAYERS = 4


def test_int8_scales_only_v_after_the_qkv_split_and_keeps_vectors(
    tiny_optimum: Path, tokenize, tmp_path: Path
) -> None:
    # banded_attention's plan adds a Mul; split_queries runs after row_steps
    recipe = without(load_recipes()["int8"], "banded_attention", "split_queries")
    assert recipe.fusions[-1] == "row_steps"
    plain_recipe = without(recipe, "row_steps")
    fused_path, plain_path = tmp_path / "fused" / "model.onnx", tmp_path / "plain" / "model.onnx"
    build_variant(tiny_optimum, fused_path, recipe, TEXTS * 4, tokenize)
    build_variant(tiny_optimum, plain_path, plain_recipe, TEXTS * 4, tokenize)
    assert ops(plain_path)["Mul"] - ops(fused_path)["Mul"] == LAYERS  # o_proj's went
    graph = onnx.load(str(fused_path), load_external_data=False).graph
    prod = {o: n for n in graph.node for o in n.output}
    stepped = [n for n in graph.node if n.name.endswith("_stepped")]
    assert len(stepped) == LAYERS  # v, after its Split; gate/up keep their one Mul
    assert all(prod[n.input[0]].op_type == "Split" for n in stepped)
    ids = tokenize(["hi", *TEXTS])
    fused, plain = embed(fused_path, ids), embed(plain_path, ids)
    assert np.isfinite(fused).all()
    assert cosines(fused, plain).min() >= 0.99999


def _graph(norm_axis: int) -> onnx.ModelProto:
    """codes -> per-row GEMM -> Mul(step) -> Split -> [a: RMSNorm], [b: Relu]."""
    f = TensorProto.FLOAT
    nodes = [
        helper.make_node("MatMulIntegerToFloat", ["c", "w", "one", "ws", "z"], ["u"],
                         domain="com.microsoft"),
        helper.make_node("Mul", ["u", "s"], ["y"]),
        helper.make_node("Split", ["y", "sizes"], ["a", "b"], axis=-1),
        helper.make_node("SimplifiedLayerNormalization", ["a", "gamma"], ["an"], axis=norm_axis),
        helper.make_node("Relu", ["b"], ["br"]),
    ]
    inits = [
        helper.make_tensor("w", TensorProto.INT8, [4, 6], [1, -2, 3, 4, -5, 6] * 4),
        helper.make_tensor("one", f, [], [1.0]),
        helper.make_tensor("ws", f, [6], [0.1] * 6),
        helper.make_tensor("z", TensorProto.UINT8, [], [128]),
        helper.make_tensor("sizes", TensorProto.INT64, [2], [3, 3]),
        helper.make_tensor("gamma", f, [3], [1.0, 2.0, 3.0]),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("c", TensorProto.UINT8, [1, "T", 4]),
         helper.make_tensor_value_info("s", f, [1, "T", 1])],
        [helper.make_tensor_value_info(name, f, None) for name in ("an", "br")],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23),
                                                   helper.make_opsetid("com.microsoft", 1)])


def test_only_the_part_an_rmsnorm_reads_goes_unscaled() -> None:
    model = _graph(norm_axis=-1)
    assert row_steps(model) == 1
    by_output = {o: n for n in model.graph.node for o in n.output}
    assert by_output["br"].input[0] == "b_stepped"  # Relu is not scale-free: b is scaled
    assert by_output["an"].input[0] == "a"  # the norm reads a unscaled
    assert by_output["a"].input[0] == "u"  # the Split reads the GEMM directly


def test_a_norm_over_another_axis_keeps_the_scaling() -> None:
    model = _graph(norm_axis=1)
    assert row_steps(model) == 0
    assert [n.op_type for n in model.graph.node].count("Mul") == 1

