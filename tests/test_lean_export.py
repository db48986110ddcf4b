"""The lean Optimum export (the exporter given a stand-in of the token-embedding table, the
real table spliced back after, in a child process) writes the graph the plain export writes:
the same nodes, inputs, outputs and initializers, byte for byte."""

from __future__ import annotations

from pathlib import Path

import onnx

from embgemma_plugins.onnx_models import graph as G
from embgemma_plugins.onnx_models.child import run


def contents(model: onnx.ModelProto) -> dict[str, object]:
    return {
        "nodes": [n.SerializeToString() for n in model.graph.node],
        "inputs": [i.SerializeToString() for i in model.graph.input],
        "outputs": [o.SerializeToString() for o in model.graph.output],
        "initializers": [(t.name, list(t.dims), t.data_type, t.raw_data)
                         for t in model.graph.initializer],
        "opsets": [(o.domain, o.version) for o in model.opset_import],
    }


def test_the_lean_export_writes_the_plain_exports_graph(tiny_checkpoint, tiny_optimum, tmp_path):
    run("optimum", [str(tiny_checkpoint), str(tmp_path / "lean")])
    lean = tmp_path / "lean" / "model.onnx"
    assert (lean.with_name("model.onnx.data")).stat().st_size > 1000  # weights beside it
    assert not (tmp_path / "lean" / "embedding-table.npy").exists()
    plain, spliced = contents(G.load(Path(tiny_optimum))), contents(G.load(lean))
    assert spliced == plain
