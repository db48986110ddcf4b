"""One `Attention` node on EmbeddingGemma's shapes, as stored and after `split_queries`.

ONNX Runtime spreads batch x heads over its threads; this times the op alone at batch and
length pairs (3 query heads, one key/value head of 256, a boolean key-padding mask with a
quarter of the last row padded) and the same graph after the project's own
`split_queries` fusion, and checks that the two give the same output bit for bit::

    python -m benchmarks.attention
    python -m benchmarks.attention --shapes 1x2048 2x512
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from embgemma_plugins.onnx_models.split import split_queries

HEADS, DIM = 3, 256
SHAPES = ("1x2048", "1x838", "1x512", "1x128", "1x64", "1x32", "2x512", "8x128", "16x64")


def sessions() -> tuple[ort.InferenceSession, ort.InferenceSession]:
    """(the plain Attention graph, the same graph after split_queries)."""
    f, value = TensorProto.FLOAT, helper.make_tensor_value_info
    inputs = [
        value("input_ids", TensorProto.INT64, ["B", "T"]),  # only its shape is read
        value("q", f, ["B", "T", HEADS * DIM]),
        value("k", f, ["B", "T", DIM]),
        value("v", f, ["B", "T", DIM]),
        value("mask", TensorProto.BOOL, ["B", 1, "T", "T"]),
    ]
    node = helper.make_node("Attention", ["q", "k", "v", "mask"], ["y"], name="attn",
                            scale=DIM**-0.5, q_num_heads=HEADS, kv_num_heads=1)
    graph = helper.make_graph([node], "attention", inputs, [value("y", f, None)])
    plain = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    split = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    assert split_queries(split) == 1
    return tuple(
        ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        for m in (plain, split)
    )


def feed(batch: int, tokens: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    valid = np.ones((batch, tokens), bool)
    valid[-1, tokens * 3 // 4 :] = False
    return {
        "input_ids": np.ones((batch, tokens), np.int64),
        "q": rng.standard_normal((batch, tokens, HEADS * DIM), np.float32) * 3,
        "k": rng.standard_normal((batch, tokens, DIM), np.float32) * 3,
        "v": rng.standard_normal((batch, tokens, DIM), np.float32),
        "mask": valid[:, None, None, :] & valid[:, None, :, None],
    }


def best_ms(sess: ort.InferenceSession, inputs: dict[str, np.ndarray], reps: int) -> float:
    sess.run(None, inputs)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        sess.run(None, inputs)
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.attention",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), help="BATCHxTOKENS")
    args = p.parse_args(argv)
    plain, split = sessions()
    rng = np.random.default_rng(0)
    print(f"{'B x T':>9s} {'Attention ms':>13s} {'GMAC/s':>7s} {'split ms':>9s} {'ratio':>6s}")
    for shape in args.shapes:
        batch, tokens = (int(x) for x in shape.split("x"))
        inputs = feed(batch, tokens, rng)
        if not np.array_equal(plain.run(None, inputs)[0], split.run(None, inputs)[0]):
            raise SystemExit(f"{shape}: the split graph's output differs")
        reps = 10 if tokens > 100 else 200
        a, b = best_ms(plain, inputs, reps), best_ms(split, inputs, reps)
        macs = 2 * batch * HEADS * tokens * tokens * DIM
        print(f"{shape:>9s} {a:13.3f} {macs / a / 1e6:7.1f} {b:9.3f} {b / a:6.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
