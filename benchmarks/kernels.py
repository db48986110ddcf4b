"""One weight MatMul under each int8 kernel the recipes can choose, timed and checked.

docs/variants.md picks int8's kernel from this table: the fp32 MatMul, one activation scale
per tensor (DynamicQuantizeMatMul), one per token row (the rowwise kernel), the same plus a
GEMM of the rows' rounding remainder (rowwise2) and MatMulNBits' int8 path, on inputs with
one outlier channel (30x) and one outlier token (20x), as EmbeddingGemma's activations have.
Each graph is built by the project's own kernel code::

    python -m benchmarks.kernels            # 2048 x 768 @ 768 x 1152
    python -m benchmarks.kernels --m 12     # a short query's rows
    python -m benchmarks.kernels --k 1152 --n 768  # down_proj's shape
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from embgemma_plugins.onnx_models.blockquant import dynamic_matmul, matmul_nbits
from embgemma_plugins.onnx_models.rowwise import quantise_rows, remainder_rows, rowwise_matmul

MatMul = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
Graph = tuple[list[onnx.NodeProto], list[onnx.TensorProto]]


def graphs(w: np.ndarray) -> dict[str, Graph]:
    """Kernel name -> (nodes, initializers) computing y = x @ w."""
    q_nodes, q_inits, codes, row_max, zero = quantise_rows("x", w.shape[0])
    row_nodes, row_inits = rowwise_matmul(MatMul, w, codes, row_max)
    r_nodes, r_inits, rest = remainder_rows("x", w.shape[0], codes, row_max, zero)
    two_nodes, two_inits = rowwise_matmul(MatMul, w, codes, row_max, rest)
    found = {
        "fp32 MatMul": ([MatMul], [numpy_helper.from_array(w, "w")]),
        "DynamicQuantizeMatMul (one scale per tensor)": _one(dynamic_matmul(MatMul, w)),
        "rowwise: per-row codes + MatMulIntegerToFloat": (q_nodes + row_nodes, q_inits + row_inits),
        "rowwise2: + the rounding remainder's GEMM": (
            q_nodes + r_nodes + two_nodes,
            q_inits + r_inits + two_inits,
        ),
    }
    for block in (32, 64, 128):
        found[f"MatMulNBits 8-bit, block {block}"] = _one(
            matmul_nbits(MatMul, w, 8, block, True, 4)
        )
    return found


def _one(pair: tuple[onnx.NodeProto, list[onnx.TensorProto]]) -> Graph:
    return [pair[0]], pair[1]


def measure(
    nodes: list[onnx.NodeProto],
    inits: list[onnx.TensorProto],
    x: np.ndarray,
    ref: np.ndarray,
    reps: int,
) -> tuple[float, float]:
    """(best time in ms over `reps` runs, relative Frobenius error against `ref`)."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, x.shape[1]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    )
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": x})[0]
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        sess.run(None, {"x": x})
        times.append(time.perf_counter() - start)
    return min(times) * 1e3, float(np.linalg.norm(y - ref) / np.linalg.norm(ref))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.kernels",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--m", type=int, default=2048, help="token rows")
    p.add_argument("--k", type=int, default=768)
    p.add_argument("--n", type=int, default=1152)
    p.add_argument("--reps", type=int, default=10)
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((a.k, a.n)) * 0.05).astype(np.float32)
    x = rng.standard_normal((a.m, a.k)).astype(np.float32)
    x[:, 5] *= 30.0  # an outlier channel
    x[0] *= 20.0  # an outlier token
    ref = x @ w
    print(f"{a.m} x {a.k} @ {a.k} x {a.n}, best of {a.reps}")
    print(f"{'kernel':48s} {'ms':>8s} {'rel. error':>11s}")
    for name, (nodes, inits) in graphs(w).items():
        ms, err = measure(nodes, inits, x, ref, a.reps)
        print(f"{name:48s} {ms:8.2f} {err:11.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
