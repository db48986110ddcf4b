"""Read an ONNX graph file without importing the `onnx` package.

Only packed variants need their graph parsed at load (embgemma_plugins/unpack4.py), and
`import onnx` costs more than the parse: 0.55 s and 15 MB resident, nearly all of it
`ml_dtypes`, which onnx's helpers import (measured, `python -X importtime`; the int4
variant's peak RSS was int8's plus exactly that). The protobuf classes themselves live in
one generated module, `onnx/onnx_ml_pb2.py`, which needs only `protobuf`: it is loaded on
its own, under its own name, so a later `import onnx` finds it in `sys.modules` and uses the
same classes (one registration in protobuf's descriptor pool, not two).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

PB2 = "onnx.onnx_ml_pb2"
EXTERNAL = 1  # TensorProto.DataLocation
#: TensorProto.DataType -> numpy, for the tensors packed variants store.
DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 10: np.float16}


def protos() -> ModuleType:
    """onnx's generated protobuf module (ModelProto, TensorProto, ...)."""
    if PB2 in sys.modules:
        return sys.modules[PB2]
    spec = importlib.util.find_spec("onnx")
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / "onnx_ml_pb2.py" if locations else None
    if path is None or not path.exists():  # a layout this does not know: the whole package
        import onnx

        return sys.modules.get(PB2) or onnx
    found = importlib.util.spec_from_file_location(PB2, path)
    assert found is not None and found.loader is not None
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    sys.modules[PB2] = module
    return module


def load_graph(path: Path) -> Any:
    """The ModelProto of `path`, external data left where it is."""
    model = protos().ModelProto()
    model.ParseFromString(Path(path).read_bytes())
    return model


def tensor_array(tensor: Any, folder: Path) -> np.ndarray:
    """A TensorProto's values (raw, typed or external data relative to `folder`)."""
    dtype = DTYPES.get(tensor.data_type)
    if dtype is None:
        raise ValueError(f"tensor {tensor.name}: data type {tensor.data_type} is not supported")
    shape = tuple(tensor.dims)
    if tensor.data_location == EXTERNAL:
        info = {e.key: e.value for e in tensor.external_data}
        size = math.prod(shape) * np.dtype(dtype).itemsize
        with open(Path(folder) / info["location"], "rb") as f:
            f.seek(int(info.get("offset", 0)))
            data = f.read(int(info.get("length", size)))
        if len(data) != size:
            where = info["location"]
            raise ValueError(f"tensor {tensor.name}: {len(data)} bytes in {where}, not {size}")
        values = np.frombuffer(data, dtype)
    elif tensor.raw_data:
        values = np.frombuffer(tensor.raw_data, dtype)
    elif dtype == np.float32:
        values = np.array(tensor.float_data, dtype)
    elif dtype == np.int64:
        values = np.array(tensor.int64_data, dtype)
    else:  # the narrow types' typed field is int32_data (float16 as bit patterns)
        bits = np.array(tensor.int32_data, np.int32)
        half = dtype == np.float16
        values = bits.astype(np.uint16).view(np.float16) if half else bits.astype(dtype)
    return values.reshape(shape)
