"""Per-row dynamic int8 MatMuls (onnx_models/rowwise.py) against numpy, on ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from embgemma_plugins.onnx_models.blockquant import dynamic_matmul, int8_columns
from embgemma_plugins.onnx_models.rowwise import quantise_rows, remainder_rows, rowwise_matmul

K, N = 96, 40


def run(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], x: np.ndarray) -> np.ndarray:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    )
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": x})
    return np.asarray(y)


def rowwise(w: np.ndarray, x: np.ndarray, remainder: bool = False) -> np.ndarray:
    q_nodes, q_inits, codes, row_max, zero = quantise_rows("x", w.shape[0])
    rest = None
    if remainder:
        r_nodes, r_inits, rest = remainder_rows("x", w.shape[0], codes, row_max, zero)
        q_nodes, q_inits = q_nodes + r_nodes, q_inits + r_inits
    mm, inits = rowwise_matmul(
        helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"), w, codes, row_max, rest
    )
    return run(q_nodes + mm, q_inits + inits, x)


def row_errors(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Relative error of every row of a [batch, tokens, N] result."""
    diff = np.linalg.norm(y - ref, axis=-1) / np.linalg.norm(ref, axis=-1)
    return diff.reshape(-1)


def test_int8_columns_round_trip() -> None:
    w = np.random.default_rng(0).standard_normal((K, N)).astype(np.float32)
    q, scale = int8_columns(w)
    assert q.dtype == np.int8 and np.abs(q).max() == 127 and scale.shape == (N,)
    assert np.abs(q * scale - w).max() <= scale.max() / 2 + 1e-7


def test_each_row_keeps_its_own_scale() -> None:
    """One token 1000x the others: per-row scales keep every other token exact to int8 rounding,
    where one scale per tensor (DynamicQuantizeMatMul) leaves them almost nothing."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((K, N)).astype(np.float32)
    x = rng.standard_normal((2, 5, K)).astype(np.float32)
    x[0, 0] *= 1000.0
    ref = x @ w
    ordinary = np.arange(10) != 0
    per_row = row_errors(rowwise(w, x), ref)
    assert per_row.max() < 0.02
    node, inits = dynamic_matmul(helper.make_node("MatMul", ["x", "w"], ["y"], name="d"), w)
    per_tensor = row_errors(run([node], inits, x), ref)
    assert per_tensor[ordinary].mean() > 10 * per_row[ordinary].mean()


@pytest.mark.parametrize("remainder", [False, True])
def test_a_row_of_zeros_gives_zeros(remainder: bool) -> None:
    w = np.random.default_rng(2).standard_normal((K, N)).astype(np.float32)
    x = np.zeros((1, 3, K), np.float32)
    x[0, 1] = 1.0
    y = rowwise(w, x, remainder)
    assert np.isfinite(y).all() and not y[0, 0].any() and not y[0, 2].any()


def test_the_remainder_pass_leaves_only_the_weights_rounding() -> None:
    """A channel 30x the others (as down_proj's inputs have) takes most of a row's 8-bit
    range; the remainder's codes restore the other channels, so the result is as close to
    x @ W as exact activations times the int8 weights are."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((K, N)).astype(np.float32)
    x = rng.standard_normal((2, 7, K)).astype(np.float32)
    x[..., 5] *= 30.0
    ref = x @ w
    q, scale = int8_columns(w)
    weights_only = row_errors(x @ (q * scale), ref)
    one_pass = row_errors(rowwise(w, x), ref)
    two_pass = row_errors(rowwise(w, x, remainder=True), ref)
    assert two_pass.max() < 1.02 * weights_only.max() + 1e-4
    assert one_pass.mean() > 2 * two_pass.mean()
