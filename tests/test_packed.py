"""4-bit codes on disk, int8 per-row GEMMs at run time (onnx_models/packed.py and the
runtime's embgemma_plugins/unpack4.py), on the tiny model and on small random weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from embgemma_plugins.maths import rotate, rotation_block
from embgemma_plugins.onnx_models.blockquant import blocks_along_k, quantize_blocks
from embgemma_plugins.onnx_models.build import build_variant
from embgemma_plugins.onnx_models.packed import (
    Packed4,
    hadamard_initializer,
    unpack_nodes,
    unpack_weights,
)
from embgemma_plugins.onnx_models.vqtable import rotation_signs
from embgemma_plugins.onnxproto import tensor_array
from embgemma_plugins.session import create_session, run_batch
from embgemma_plugins.unpack4 import PACKED_KEY, is_packed
from tests.test_quantize import TEXTS, tiny_int4


def pack_of(w: np.ndarray, block: int, symmetric: bool, scales: str = "float32") -> Packed4:
    return Packed4.of(quantize_blocks(blocks_along_k(w, block), 4, symmetric), len(w), scales)


def run_unpack(nodes: list, inits: list, name: str = "w8") -> np.ndarray:  # type: ignore[type-arg]
    graph = helper.make_graph(
        nodes, "unpack", [], [helper.make_tensor_value_info(name, TensorProto.INT8, None)], inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    (got,) = ort.InferenceSession(model.SerializeToString(), opts).run(None, {})
    return np.asarray(got)


@pytest.mark.parametrize(
    "k, symmetric, scales",
    [(64, False, "float32"), (40, False, "float32"), (64, True, "float32"), (40, False, "float16")],
)
def test_folded_subgraph_computes_the_numpy_int8_columns(
    k: int, symmetric: bool, scales: str
) -> None:
    """ONNX Runtime's arithmetic on the unpack subgraph (here run, not folded) gives exactly
    the int8 weights the runtime builds in numpy, padding of the last block (K=40) and
    float16 block scales included."""
    w = np.random.default_rng(k).standard_normal((k, 24)).astype(np.float32)
    w[:, 3] = 0.0  # an all-zero column keeps scale 1
    pack = pack_of(w, 16, symmetric, scales)
    assert pack.scale.dtype == np.dtype(scales)
    q, scale = pack.int8_columns()
    assert q.dtype == np.int8 and q.shape == (k, 24) and q.flags.c_contiguous
    assert np.abs(q.astype(np.float32) * scale - w).max() < 0.2 * np.abs(w).max()
    assert scale[3] == 1.0 and not q[:, 3].any()
    nodes, inits = unpack_nodes("w8", pack, "columns")
    inits.append(numpy_helper.from_array(scale, "columns"))
    np.testing.assert_array_equal(run_unpack(nodes, inits), q)


@pytest.mark.parametrize("k", [128, 40])  # 40: Hadamard blocks of 8, last 4-bit block padded
def test_rotated_codes_unpack_to_the_weight_in_its_own_basis(k: int) -> None:
    """Codes of R^T w (rotated along K) give back w, not R^T w: in numpy and in the graph's
    subgraph, whose float sums may round a value to the other side of a .5 (at most one
    int8 step, rarely)."""
    w = np.random.default_rng(k).standard_normal((k, 24)).astype(np.float32)
    w[5] *= 8.0  # an outlier input channel: what the rotation spreads
    signs = rotation_signs(k)
    rotated = rotate(w.T, signs).T
    pack = Packed4.of(
        quantize_blocks(blocks_along_k(rotated, 16), 4, False), k, "float16", signs
    )
    q, scale = pack.int8_columns()
    assert q.shape == (k, 24) and q.flags.c_contiguous
    plain_q, plain_scale = pack_of(w, 16, False, "float16").int8_columns()
    error = np.abs(q * scale - w).mean()
    assert error < np.abs(plain_q * plain_scale - w).mean()  # the outlier spread: smaller
    nodes, inits = unpack_nodes("w8", pack, "columns")
    inits += [numpy_helper.from_array(scale, "columns"), hadamard_initializer(rotation_block(k))]
    got = run_unpack(nodes, inits)
    assert np.abs(got.astype(np.int16) - q).max() <= 1
    assert (got != q).mean() < 0.01
    with pytest.raises(ValueError, match="signs"):
        Packed4.of(quantize_blocks(blocks_along_k(rotated, 16), 4, False), k, signs=signs[:-1])


def test_unpack_weights_refuses_a_weight_the_optimiser_changed() -> None:
    pack = pack_of(np.ones((32, 8), np.float32), 32, False)
    graph = helper.make_graph([], "g", [], [], [numpy_helper.from_array(np.zeros(8), "s")])
    with pytest.raises(ValueError, match="w8 is no longer"):
        unpack_weights(helper.make_model(graph), {"w8": (pack, "s")})


@pytest.fixture(scope="module")
def packed_int4(tiny_optimum: Path, tokenize, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("packed") / "model.onnx"
    build_variant(tiny_optimum, path, tiny_int4(), TEXTS * 4, tokenize)
    return path


def test_int4_file_holds_4_bit_codes_not_int8_weights(packed_int4: Path) -> None:
    model = onnx.load(str(packed_int4), load_external_data=False)
    inits = {t.name: t for t in model.graph.initializer}
    names = [p.value for p in model.metadata_props if p.key == PACKED_KEY]
    assert names and is_packed(packed_int4)
    built = json.loads(names[0])
    assert len(built) == 2 * 3  # tiny layers 1, 2: q/k/v merged, o, gate/up merged
    for name in built:
        assert name not in inits  # computed from the codes, not stored
        codes = inits[name + "_q4"]
        assert codes.data_type == TensorProto.UINT8
        assert inits[name + "_q4_signs"].data_type == TensorProto.INT8  # rotated codes
        gemm = next(n for n in model.graph.node if n.input[1:2] == [name])
        assert gemm.op_type == "MatMulIntegerToFloat"
    gemm_weights = [n.input[1] for n in model.graph.node if n.op_type == "MatMulIntegerToFloat"]
    assert len(gemm_weights) == 4 * 5
    nbits = {n.name: list(n.input[1:]) for n in model.graph.node if n.op_type == "MatMulNBits"}
    # only the folded Dense head: one row per text, and every token's row for token_states,
    # both reading the same 8-bit weights (one copy in the file)
    assert sorted(nbits) == ["/3/linear/MatMul_Q8", "/3/linear/MatMul_tokens_Q8"]
    assert nbits["/3/linear/MatMul_Q8"] == nbits["/3/linear/MatMul_tokens_Q8"]
    assert not is_packed(packed_int4.with_name("model.onnx.data"))


def feeds(tokenize) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    ids = tokenize(TEXTS)
    width = max(map(len, ids))
    input_ids = np.array([s + [0] * (width - len(s)) for s in ids], np.int64)
    return input_ids, (input_ids != 0).astype(np.int64)


@pytest.mark.parametrize(
    "level", [ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_DISABLE_ALL]
)
def test_runtime_builds_the_weights_onnx_runtime_would_fold(
    packed_int4: Path, tokenize, level: ort.GraphOptimizationLevel
) -> None:  # type: ignore[no-untyped-def]
    """The runtime's session (int8 weights built in numpy, subgraphs dropped) and a plain ONNX
    Runtime session on the file (subgraphs folded at load, or run at every call) agree."""
    input_ids, mask = feeds(tokenize)
    runtime = create_session(packed_int4, "cpu", threads=1)
    got = run_batch(runtime, input_ids, mask)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = level
    plain = ort.InferenceSession(str(packed_int4), opts, providers=["CPUExecutionProvider"])
    (want,) = plain.run(["sentence_embedding"], {"input_ids": input_ids, "attention_mask": mask})
    np.testing.assert_allclose(got, want, atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_no_scratch_file_is_left_beside_the_model(packed_int4: Path) -> None:
    before = sorted(p.name for p in packed_int4.parent.iterdir())
    session = create_session(packed_int4, "cpu", threads=1)
    assert session._embgemma_weights == []  # ONNX Runtime owns the weights it read
    assert sorted(p.name for p in packed_int4.parent.iterdir()) == before


def test_a_read_only_folder_hands_the_weights_over_in_memory(
    packed_int4: Path, tokenize, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Where no scratch file can be written (tests run as root, so the failure is injected),
    the same weights reach ONNX Runtime as arrays, kept alive with the session."""
    input_ids, mask = feeds(tokenize)
    want = run_batch(create_session(packed_int4, "cpu", threads=1), input_ids, mask)

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(packed_int4.parent))

    monkeypatch.setattr("embgemma_plugins.unpack4.tempfile.mkstemp", refuse)
    session = create_session(packed_int4, "cpu", threads=1)
    assert len(session._embgemma_weights) == 2 * 3
    np.testing.assert_array_equal(run_batch(session, input_ids, mask), want)


def test_opening_a_packed_variant_imports_neither_onnx_nor_ml_dtypes(packed_int4: Path) -> None:
    """The graph is parsed with onnx's generated protobuf module alone (0.55 s and 15 MB
    less, measured), and a later `import onnx` then shares its classes."""
    code = (
        "import sys\n"
        "from embgemma_plugins.session import create_session\n"
        f"create_session({str(packed_int4)!r}, 'cpu', threads=1)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'ml_dtypes')))\n"
        "import onnx, embgemma_plugins.onnxproto as p\n"
        "print(onnx.ModelProto is p.protos().ModelProto)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["['onnx.onnx_ml_pb2']", "True"]


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.uint8, np.int8, np.int64])
def test_tensor_array_reads_what_numpy_helper_reads(dtype: type, tmp_path: Path) -> None:
    values = (np.arange(24) - 7).reshape(2, 3, 4).astype(dtype)
    raw = numpy_helper.from_array(values, "t")
    typed = helper.make_tensor("t", raw.data_type, values.shape, values.flatten().tolist())
    external = onnx.TensorProto()
    external.CopyFrom(raw)
    (tmp_path / "w.bin").write_bytes(b"\0" * 5 + values.tobytes())
    external.ClearField("raw_data")
    external.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "w.bin"), ("offset", "5")):
        external.external_data.add(key=key, value=value)
    for tensor in (raw, typed, external):
        got = tensor_array(tensor, tmp_path)
        assert got.dtype == values.dtype
        np.testing.assert_array_equal(got, values)
    (tmp_path / "w.bin").write_bytes(b"\0" * 9)
    with pytest.raises(ValueError, match=r"bytes in w\.bin"):
        tensor_array(external, tmp_path)


def test_scratch_files_of_crashed_loads_are_removed_and_not_counted(packed_int4: Path) -> None:
    import os
    import time

    from embgemma_plugins.store.layout import StoredVariant
    from embgemma_plugins.store.manifest import Manifest
    from embgemma_plugins.unpack4 import SCRATCH, remove_stale

    folder = packed_int4.parent
    stale, fresh = folder / (SCRATCH + "dead"), folder / (SCRATCH + "loading")
    size = StoredVariant(folder, Manifest.__new__(Manifest)).size_bytes
    for path in (stale, fresh):
        path.write_bytes(b"\0" * 4096)
    os.utime(stale, (time.time() - 7200,) * 2)
    assert StoredVariant(folder, Manifest.__new__(Manifest)).size_bytes == size
    remove_stale(folder)
    assert not stale.exists() and fresh.exists()  # another process may be loading with it
    fresh.unlink()
