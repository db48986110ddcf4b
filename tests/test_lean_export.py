"""The lean Optimum export (the exporter given a stand-in of the token-embedding table, the
real table read in place from the file it was held in, in a child process) writes the graph
the plain export writes: once loaded, the same nodes, inputs, outputs and initializers, byte
for byte."""

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
    table = tmp_path / "lean" / "embedding-table.npy"  # read in place, never copied in
    held = onnx.load(str(lean), load_external_data=False)
    places = {t.name: {e.key: e.value for e in t.external_data}["location"]
              for t in held.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL}
    assert sorted(set(places.values())) == ["embedding-table.npy", "model.onnx.data"]
    (name,) = [n for n, where in places.items() if where == table.name]
    assert table.stat().st_size > G.array(G.load(lean), name).nbytes
    plain, spliced = contents(G.load(Path(tiny_optimum))), contents(G.load(lean))
    assert spliced == plain
