"""Open variants whose GEMM weights are stored as 4-bit codes but run as int8.

The int4 variant keeps its weights as 4-bit blocks (half the size of int8 on disk) and runs
them on the per-row int8 GEMM (MatMulIntegerToFloat, VNNI/AMX), which is several times faster
than ONNX Runtime's 4-bit kernels (docs/variants.md). Its graph rebuilds each int8 weight
from the codes in a small constant subgraph (`onnx_models/packed.py`), so the file is
self-contained: any ONNX Runtime folds those subgraphs when it loads the model. But constant
folding keeps every intermediate tensor of the pass until it ends: about 29 bytes per weight,
a 2.9 GB peak for EmbeddingGemma's 101 M GEMM weights (measured on a synthetic graph). So
this runtime does the same arithmetic in numpy, one weight at a time, writes the finished
int8 tensors to a scratch file that ONNX Runtime reads as external data (and frees once the
GEMMs have prepacked them), and drops the subgraphs from the graph it loads: a resident
size close to int8's (measured, docs/variants.md).

`int8_columns` is the one definition of that arithmetic; the export's numpy reference and
the variant's fidelity figures are computed with it too.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from embgemma_plugins.maths import rotate
from embgemma_plugins.onnxproto import load_graph, protos, tensor_array

PACKED_KEY = "embgemma.packed4"  # model metadata: JSON list of the int8 weights built at load
LEVELS = np.float32(127.0)
ALIGN = 1 << 16  # external data offsets ONNX Runtime can map (the allocation granularity)
SCRATCH = ".int8-weights-"  # scratch files' prefix: deleted once their session exists
STALE_SECONDS = 3600.0  # a scratch file this old outlived a load that crashed: removed


def unpack4(packed: np.ndarray) -> np.ndarray:
    """Two 4-bit codes per byte, low nibble first, along the last axis -> uint8 codes 0..15."""
    pairs = np.stack([packed & 15, packed >> 4], axis=-1)
    return pairs.reshape(*packed.shape[:-1], -1)


def int8_columns(
    packed: np.ndarray,
    zero: np.ndarray,
    scale: np.ndarray,
    k: int,
    column_scale: np.ndarray | None = None,
    signs: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per-column weights [K, N] (C order) and float32 column scales [N] of the
    4-bit weights w[K, N] whose codes are `packed` [N, blocks, block / 2], zero points `zero`
    and scales `scale` [N, blocks] (or [N, blocks, 1]): w = (code - zero) * scale, in float32
    as the graph computes it. `column_scale` (default max |w| / 127) is the GEMM's. `signs`
    [K]: the codes are of R^T w (a Hadamard rotation along K, `maths.rotate`), undone here."""
    n = packed.shape[0]
    zero = zero.reshape(n, -1, 1).astype(np.float32)
    levels = unpack4(packed).astype(np.float32)
    w = ((levels - zero) * scale.reshape(n, -1, 1).astype(np.float32)).reshape(n, -1)[:, :k]
    if signs is not None:
        w = rotate(w, signs.astype(np.float32), inverse=True)
    if column_scale is None:
        column_scale = (np.abs(w).max(1) / LEVELS).astype(np.float32)
        column_scale[column_scale == 0] = 1.0
    q = np.clip(np.round(w / column_scale[:, None]), -127, 127).astype(np.int8)
    return np.ascontiguousarray(q.T), column_scale


def is_packed(model_path: Path, chunk: int = 1 << 22) -> bool:
    """Whether the graph file names weights to build at load: a byte search in bounded
    memory (a graph with its weights inline may be gigabytes), no protobuf parsing."""
    key, tail = PACKED_KEY.encode(), b""
    with open(model_path, "rb") as f:
        while block := f.read(chunk):
            if key in tail + block:
                return True
            tail = block[-len(key) :]
    return False


def remove_stale(folder: Path, now: float | None = None) -> None:
    """Delete scratch files left by loads that died before their cleanup ran (a load
    deletes its own within seconds, so an hour-old one belongs to no live load)."""
    now = time.time() if now is None else now
    for path in Path(folder).glob(SCRATCH + "*"):
        try:
            if now - path.stat().st_mtime > STALE_SECONDS:
                path.unlink()
        except OSError:  # gone already, or not ours to delete
            pass


@contextmanager
def load_packed(model_path: Path, opts: Any) -> Iterator[tuple[bytes, list[Any]]]:
    """The graph of `model_path` with its 4-bit unpack subgraphs removed, as bytes for an
    InferenceSession created inside this context with session options `opts`, and the int8
    weights they computed. Those go, one weight at a time, into a scratch file beside the
    model that ONNX Runtime reads as external data (its own memory, released once the GEMMs
    have prepacked them) and that is deleted when the context ends. In a read-only folder
    they are handed over as arrays instead (`add_external_initializers`, which ONNX Runtime
    never frees: their size again in memory); then keep the returned list with the session."""
    import onnxruntime as ort

    model_path = Path(model_path)
    pb = protos()
    model = load_graph(model_path)
    inits = {t.name: t for t in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    folder = model_path.parent

    def array(name: str) -> np.ndarray:
        return tensor_array(inits[name], folder)

    names = json.loads(next(p.value for p in model.metadata_props if p.key == PACKED_KEY))
    bases = tuple(name + "_q4" for name in names)  # every node and constant of the subgraphs
    kept = [n for n in model.graph.node if not n.name.startswith(bases)]
    used = [t for t in model.graph.initializer if not t.name.startswith(bases)]
    del model.graph.node[:], model.graph.initializer[:]
    model.graph.node.extend(kept)
    try:
        remove_stale(folder)
        handle, scratch = tempfile.mkstemp(prefix=SCRATCH, dir=folder)
    except OSError:  # read-only folder
        handle, scratch = -1, ""
    arrays: list[Any] = []
    try:
        with open(handle, "wb") if scratch else nullcontext() as out:
            for name in names:
                base = name + "_q4"
                codes, zero, scale = (array(base + part) for part in ("", "_zero", "_scale"))
                k = int(array(base + "_k")[0])
                signs = array(base + "_signs") if base + "_signs" in inits else None
                column_scale = array(producer[name].input[1])
                q, _ = int8_columns(codes, zero, scale, k, column_scale, signs)
                tensor = pb.TensorProto(name=name, data_type=pb.TensorProto.INT8, dims=q.shape)
                tensor.data_location = pb.TensorProto.EXTERNAL
                if out is not None:
                    out.seek(-out.tell() % ALIGN, 1)  # offsets ONNX Runtime can map
                    where = {"location": Path(scratch).name, "offset": out.tell()}
                    where["length"] = q.nbytes
                    out.write(q.tobytes())
                else:  # never read: add_external_initializers overrides it
                    where = {"location": name + ".built-at-load"}
                    arrays.append(ort.OrtValue.ortvalue_from_numpy(q))
                for key, value in where.items():
                    tensor.external_data.add(key=key, value=str(value))
                used.append(tensor)
        model.graph.initializer.extend(used)
        if arrays:
            opts.add_external_initializers(names, arrays)
        opts.add_session_config_entry(
            "session.model_external_initializers_file_folder_path", str(folder)
        )
        yield model.SerializeToString(), arrays
    finally:
        if scratch:
            Path(scratch).unlink(missing_ok=True)
