"""Store ONNX Runtime's hardware-independent graph optimisations in the model file."""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx

from . import graph as G

LEVELS = ("none", "basic", "extended")


def ort_optimize(model: onnx.ModelProto | Path, level: str) -> onnx.ModelProto:
    """Run ONNX Runtime's optimiser at `level` ("basic" or "extended"; never "all", which bakes
    in layouts for the machine that builds) and return the optimised graph. `model` may be a
    file saved with `G.save`: then no copy of the graph is in memory beside the session."""
    if level == "none":
        return G.load(model) if isinstance(model, Path) else model
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    }[level]
    with tempfile.TemporaryDirectory(dir=model.parent if isinstance(model, Path) else None) as tmp:
        out = Path(tmp) / "out.onnx"
        if isinstance(model, Path):
            src = model
        else:
            src = Path(tmp) / "in.onnx"
            G.save(model, src)
        opts.optimized_model_filepath = str(out)
        opts.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", "out.onnx.data"
        )
        opts.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
        )
        ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
        return G.load(out)
