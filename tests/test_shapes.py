"""The shape-arithmetic fold: far fewer nodes, the same interface and the same vectors for
every batch size and sequence length (the tiny model's sliding window is 8 tokens)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from embgemma_plugins.onnx_models import graph as G
from embgemma_plugins.onnx_models.build import build_variant
from embgemma_plugins.onnx_models.recipe import load_recipes
from embgemma_plugins.onnx_models.shapes import lean_shapes
from tests.test_quantize import TEXTS
from tests.tiny_model import SLIDING_WINDOW

VARIANTS = ("fp32", "int8")


def _ops(model: onnx.ModelProto) -> Counter[str]:
    return Counter(n.op_type for n in model.graph.node)


def _shape_arithmetic(model: onnx.ModelProto) -> Counter[str]:
    """Nodes computing from run-time shapes only: Shape nodes and every node whose non-constant
    inputs all come from such nodes (positions, rotary tables and masks included)."""
    consts, made, ops = {t.name for t in model.graph.initializer}, set(), Counter[str]()
    for n in model.graph.node:
        live = [i for i in n.input if i and i not in consts]
        if n.op_type == "Shape" or (n.op_type != "Constant" and live and set(live) <= made):
            made.update(n.output)
            ops[n.op_type] += 1
    return ops


@pytest.fixture(scope="module")
def leaned(tiny_optimum: Path, tokenize, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """{variant: (plain path, leaned path, plain model, leaned model, nodes removed)}."""
    out, recipes, built = tmp_path_factory.mktemp("lean"), load_recipes(), {}
    for name in VARIANTS:
        plain, lean = out / name / "model.onnx", out / f"{name}-lean" / "model.onnx"
        assert "lean_shapes" in recipes[name].fusions  # every recipe stores the lean graph
        # split_queries runs after lean_shapes and adds its own shape test (tests/test_split.py)
        skip = ("lean_shapes", "split_queries")
        unleaned = replace(
            recipes[name], fusions=tuple(f for f in recipes[name].fusions if f not in skip)
        )
        build_variant(tiny_optimum, plain, unleaned, TEXTS * 4, tokenize)
        model = G.load(plain)
        removed = lean_shapes(model)
        G.save(model, lean)
        built[name] = (plain, lean, G.load(plain), model, removed)
    return built


def _feeds(ids: list[list[int]]) -> dict[str, np.ndarray]:
    """Right-padded ids and their mask, as the runtime batches them."""
    width = max(map(len, ids))
    input_ids = np.array([seq + [0] * (width - len(seq)) for seq in ids], np.int64)
    mask = np.array([[1] * len(seq) + [0] * (width - len(seq)) for seq in ids], np.int64)
    return {"input_ids": input_ids, "attention_mask": mask}


@pytest.mark.parametrize("variant", VARIANTS)
def test_shape_arithmetic_is_folded(leaned, variant: str) -> None:  # type: ignore[no-untyped-def]
    _, _, original, model, removed = leaned[variant]
    before, after = _ops(original), _ops(model)
    assert removed == sum(before.values()) - sum(after.values()) >= 100  # measured: 102 of 321
    # Measured: 139 -> 44 nodes of shape arithmetic in fp32 and int8 (and in the 24-layer int8
    # model, 1,315 -> the same 44: what is left is computed once, not per layer).
    shapes_before, shapes_after = _shape_arithmetic(original), _shape_arithmetic(model)
    assert sum(shapes_after.values()) <= 0.35 * sum(shapes_before.values())
    # the sequence length, once; int8's per-row GEMMs add the shape of their shared row zero
    # points (onnx_models/rowwise.py), also once
    row_zeros = sum(n.op_type == "ConstantOfShape" and "_rowq" in n.name for n in model.graph.node)
    assert row_zeros == (variant == "int8")
    assert shapes_after["Shape"] == 1 + row_zeros < shapes_before["Shape"]
    assert after["Equal"] == after["Where"] == after["Squeeze"] == 0
    assert "merge_matmuls" in load_recipes()[variant].fusions
    assert after["Split"] == 2 * 4  # q/k/v and gate/up merged: these Splits carry real outputs
    for op in ("Attention", "MatMul", "MatMulNBits", "FastGelu", "SimplifiedLayerNormalization"):
        assert after[op] == before[op]  # the compute is untouched
    for field in ("input", "output"):
        assert [v.SerializeToString() for v in getattr(model.graph, field)] == [
            v.SerializeToString() for v in getattr(original.graph, field)
        ]
    assert lean_shapes(model) == 0  # a fixed point


@pytest.mark.parametrize("variant", VARIANTS)
def test_leaned_graph_gives_the_same_vectors(leaned, tokenize, variant: str) -> None:  # type: ignore[no-untyped-def]
    plain, lean, *_ = leaned[variant]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sessions = [
        ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
        for p in (plain, lean)
    ]
    long_text = "title: none | text: " + "def add(a: int, b: int) -> int:\n    return a + b\n" * 40
    long_ids, medium, short = tokenize([long_text, TEXTS[1], "hi"])
    assert len(long_ids) > 600 and len(medium) > 2 * SLIDING_WINDOW
    batches = [
        [[2]],  # one token
        [[2, 1]],  # two
        [medium],
        [medium, short, [2]],  # padded: rows a sliding window masks entirely
        [short] * 3,
        [long_ids],
        [short, long_ids, medium],
    ]
    for ids in batches:
        feeds = _feeds(ids)
        got, want = (s.run(["sentence_embedding"], feeds)[0] for s in (sessions[1], sessions[0]))
        assert got.shape == want.shape == (len(ids), 768)
        assert np.isfinite(got).all()
        assert np.abs(got - want).max() <= 1e-5, [len(seq) for seq in ids]


def test_dims_that_are_not_provably_equal_stay_computed() -> None:
    """Two independent sequence lengths: only what holds for every pair of them is folded."""
    f, i64 = TensorProto.FLOAT, TensorProto.INT64
    ints = lambda name, v: helper.make_tensor(name, i64, [len(v)], v)  # noqa: E731
    nodes = [
        helper.make_node("Shape", ["x"], ["sx"]),
        helper.make_node("Shape", ["y"], ["sy"]),
        helper.make_node("Gather", ["sx", "i0"], ["b"]),
        helper.make_node("Gather", ["sy", "i1"], ["t"]),
        helper.make_node("Gather", ["sx", "i1"], ["s"]),
        helper.make_node("Unsqueeze", ["x", "i1"], ["x1"]),  # [B, 1, S]
        helper.make_node("Concat", ["b", "t", "s"], ["bts"], axis=0),
        helper.make_node("Expand", ["x1", "bts"], ["z"]),  # [B, T, S]: T needs y at run time
        helper.make_node("Concat", ["b", "minus"], ["flat"], axis=0),
        helper.make_node("Reshape", ["z", "flat"], ["w"]),  # [B, T * S]: constant [0, -1]
        helper.make_node("Mul", ["b", "t"], ["bt"]),
        helper.make_node("Concat", ["bt", "s"], ["bt_s"], axis=0),
        helper.make_node("Reshape", ["z", "bt_s"], ["rows"]),  # [B * T, S]: two unknowns
        helper.make_node("Slice", ["x", "zero", "t", "i1"], ["cut"]),  # [B, min(S, T)]
        helper.make_node("Neg", ["z"], ["z_out"]),
        helper.make_node("Neg", ["cut"], ["cut_out"]),
    ]
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "dims",
            [helper.make_tensor_value_info(n, f, ["B", d]) for n, d in (("x", "S"), ("y", "T"))],
            [helper.make_tensor_value_info(n, f, None) for n in ("z_out", "w", "rows", "cut_out")],
            [ints("i0", [0]), ints("i1", [1]), ints("minus", [-1]), ints("zero", [0])],
        ),
        opset_imports=[helper.make_opsetid("", 18)],
    )
    plain = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert lean_shapes(model) > 0
    ops = _ops(model)
    assert ops["Expand"] == ops["Slice"] == 1 and ops["Shape"] >= 1  # T is read at run time
    targets = {n.output[0]: n.input[1] for n in model.graph.node if n.op_type == "Reshape"}
    inits = G.initializers(model)
    assert onnx.numpy_helper.to_array(inits[targets["w"]]).tolist() == [0, -1]
    assert targets["rows"] not in inits  # B * T and S: no constant says that
    lean = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for b, s, t in ((1, 1, 1), (2, 3, 5), (3, 4, 1), (1, 6, 6)):
        feeds = {"x": rng.standard_normal((b, s), np.float32), "y": np.zeros((b, t), np.float32)}
        for got, want in zip(lean.run(None, feeds), plain.run(None, feeds), strict=True):
            np.testing.assert_array_equal(got, want)
