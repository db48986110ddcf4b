"""The quantisation recipes and their builder, on the tiny random Gemma 3 export."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from embgemma_plugins.onnx_models import graph as G
from embgemma_plugins.onnx_models.blockquant import (
    dequantize_blocks,
    gather_block_quantized,
    matmul_nbits,
    quantize_blocks,
)
from embgemma_plugins.onnx_models.build import build_variant, calibrate
from embgemma_plugins.onnx_models.fusions import fast_gelu
from embgemma_plugins.onnx_models.recipe import EmbeddingRule, MatMulRule, Recipe, load_recipes
from embgemma_plugins.onnx_models.smoothing import smooth

TEXTS = [
    "task: search result | query: how do I resize a partition?",
    "title: none | text: The quick brown fox jumps over the lazy dog while 42 cats watch.",
    "title: none | text: Привет, мир! 東京は日本の首都です。" * 3,
    "title: none | text: def add(a: int, b: int) -> int:\n    return a + b\n" * 5,
]


def embed(model: Path, ids: list[list[int]]) -> np.ndarray:
    width = max(map(len, ids))
    input_ids = np.array([seq + [0] * (width - len(seq)) for seq in ids], np.int64)
    mask = (input_ids != 0).astype(np.int64)
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return sess.run(["sentence_embedding"], {"input_ids": input_ids, "attention_mask": mask})[0]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def without(recipe: Recipe, *fusions: str) -> Recipe:
    """`recipe` with `fusions` left out (to test one fusion against the graph without it)."""
    return replace(recipe, fusions=tuple(f for f in recipe.fusions if f not in fusions))


def ops(model: Path) -> Counter[str]:
    return Counter(n.op_type for n in onnx.load(str(model), load_external_data=False).graph.node)


def tiny_int4() -> Recipe:
    """The int4 recipe with its int8 "ends" (16 of the real model's 24 layers) scaled to the
    tiny model's four: layers 0 and 3 int8, layers 1 and 2 rotated 4-bit codes."""
    recipe = load_recipes()["int4"]
    head, down, (_, ends_rule) = recipe.overrides
    ((_, alpha),) = recipe.smoothing
    ends = r"/layers\.(0|3)/"
    return replace(
        recipe,
        overrides=(head, down, (ends, ends_rule)),
        smoothing=((ends + ".*(q|k|v|gate|up)_proj", alpha),),
    )


@pytest.fixture(scope="module")
def built(
    tiny_optimum: Path, tokenize, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("quantised")
    paths = {}
    for name, recipe in load_recipes().items():
        recipe = tiny_int4() if name == "int4" else recipe
        paths[name] = out / name / "model.onnx"
        build_variant(tiny_optimum, paths[name], recipe, TEXTS * 4, tokenize)
    return paths


def test_recipes_cover_every_variant() -> None:
    recipes = load_recipes()
    assert {"fp32", "int8", "int4"} <= set(recipes)
    assert recipes["fp32"].matmul.kernel == "fp32" and recipes["fp32"].embedding is None
    assert (
        recipes["int4"].rule_for("/0/layers.3/mlp/down_proj/MatMul").bits == 8
    )  # outlier inputs: 8-bit
    int4 = recipes["int4"]
    for layer in (8, 10, 15):  # the middle: rotated 4-bit codes
        rule = int4.rule_for(f"/0/layers.{layer}/mlp/up_proj/MatMul")
        assert rule is not None and rule.bits == 4 and rule.rotate
    for layer in (0, 3, 7, 16, 23):  # the ends: int8
        assert int4.rule_for(f"/0/layers.{layer}/self_attn/q_proj/MatMul").bits == 8
    head = int4.rule_for("/3/linear/MatMul")  # the folded Dense head: 8-bit blocks
    assert head is not None and (head.kernel, head.bits) == ("nbits", 8)
    assert int4.embedding is not None and int4.embedding.format == "vq3"
    assert recipes["int8"].rule_for("/3/linear/MatMul") is None  # Dense head is not a target


def test_recipe_rejects_unknown_settings() -> None:
    with pytest.raises(ValueError, match="kernel"):
        Recipe("x", matmul=MatMulRule(kernel="fp8"))
    with pytest.raises(ValueError, match="calibration"):
        Recipe("x", smoothing=(("down_proj", 0.5),))
    with pytest.raises(ValueError, match="rotate needs 4-bit codes"):  # MatMulNBits cannot
        Recipe("x", matmul=MatMulRule(kernel="nbits", bits=4, rotate=True))
    with pytest.raises(ValueError, match="embedding format"):
        Recipe("x", embedding=EmbeddingRule(format="pq"))


@pytest.mark.parametrize("variant, floor", [("fp32", 0.99999), ("int8", 0.99), ("int4", 0.9)])
def test_variant_keeps_interface_and_vectors(
    built, tiny_optimum: Path, tokenize, variant: str, floor: float
) -> None:  # type: ignore[no-untyped-def]
    path = built[variant]
    model = onnx.load(str(path), load_external_data=False)
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask"]
    # token_states: every token through the Dense head, for late chunking (test_late.py)
    assert [o.name for o in model.graph.output] == ["sentence_embedding", "token_states"]
    assert path.with_name("model.onnx.data").exists()
    ids = tokenize(TEXTS)
    got = embed(path, ids)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert cosines(embed(tiny_optimum, ids), got).min() >= floor


def test_quantised_variants_use_the_recipe_kernels(built) -> None:  # type: ignore[no-untyped-def]
    fp32, int8, int4 = (ops(built[v]) for v in ("fp32", "int8", "int4"))
    assert (
        fp32["FastGelu"] == 4 and fp32["Tanh"] == 0 and fp32["SkipSimplifiedLayerNormalization"] > 0
    )
    for counts in (fp32, int8, int4):
        # one per layer, each inside an If: the 2 sliding-window layers' (banded_attention),
        # the 2 others' (split_queries; the sliding layers' short branch is split inside)
        assert counts["Attention"] == 0 and counts["If"] == 4 and counts["Softmax"] == 0
    assert int8["GatherBlockQuantized"] == 1  # 8-bit table
    # int4: the vector-quantised table's decode (12-bit pairs, codewords), no block table
    assert int4["GatherBlockQuantized"] == 0 and int4["BitwiseOr"] == 2
    # int8: per-row int8 GEMMs on q/k/v/o/gate/up, q/k/v merged into one (then split), gate/up
    # into another, down_proj with its rows' remainder (rowwise2): five GEMMs, five row
    # quantisations (down_proj's input twice) and two Splits per layer
    assert int8["MatMulIntegerToFloat"] == 4 * 5 and int8["MatMulNBits"] == 0
    assert int8["QuantizeLinear"] == 4 * 5 and int8["Split"] == 4 * 2
    # int4: the same GEMMs; layers 1 and 2's three 4-bit weights each rebuilt by a
    # QuantizeLinear; the folded Dense head on 8-bit blocks, once for the pooled row and once
    # for every token (token_states), both reading one copy of the weights (test_packed)
    assert int4["MatMulIntegerToFloat"] == 4 * 5 and int4["MatMulNBits"] == 2
    assert int4["QuantizeLinear"] == 4 * 5 + 2 * 3 and int4["Split"] == 4 * 2 + 1  # + the table's
    size = {
        v: built[v].stat().st_size + built[v].with_name("model.onnx.data").stat().st_size
        for v in built
    }
    assert size["int4"] < size["int8"] < size["fp32"]


def test_half_precision_scales_are_cast_back_at_once(built) -> None:  # type: ignore[no-untyped-def]
    """No activation is ever float16 (EmbeddingGemma's overflow it): every float16 value the
    int4 graph computes (looked-up table scales, 4-bit block scales) goes straight into a Cast
    to float32 and nowhere else."""
    model = onnx.load(str(built["int4"]), load_external_data=False)
    half = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16}
    assert half  # the table's row scales and the 4-bit weights' block scales
    computed = [
        out for n in model.graph.node if n.op_type in ("Gather", "Cast") for out in n.output
        if n.input[0] in half
    ]
    casts = [n for n in model.graph.node if n.op_type == "Cast" and n.input[0] in half]
    assert all(c.attribute[0].i == onnx.TensorProto.FLOAT for c in casts)
    gathered = [o for o in computed if o not in {c.output[0] for c in casts}]
    assert gathered  # the table's scales, looked up per token
    for name in gathered:
        users = [n for n in model.graph.node if name in n.input]
        assert [u.op_type for u in users] == ["Cast"]
        assert users[0].attribute[0].i == onnx.TensorProto.FLOAT
    with pytest.raises(ValueError, match="scale_dtype"):
        Recipe("x", embedding=EmbeddingRule(scale_dtype="bfloat16"))
    with pytest.raises(ValueError, match="scale_dtype float16 needs kernel rowwise"):
        Recipe("x", matmul=MatMulRule(kernel="nbits", bits=4, scale_dtype="float16"))
    with pytest.raises(ValueError, match="scale_dtype bfloat16"):
        Recipe("x", matmul=MatMulRule(kernel="rowwise", bits=4, scale_dtype="bfloat16"))
    assert MatMulRule(kernel="rowwise2", bits=4, scale_dtype="float16").packed


def test_block_quantisation_round_trip() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 4, 32)).astype(np.float32)
    for bits, tol in ((8, 0.01), (4, 0.15)):
        for symmetric in (True, False):
            q, scale, zp = quantize_blocks(w, bits, symmetric, search=4)
            err = np.abs(dequantize_blocks(q, scale, zp, bits) - w).max(-1) / np.abs(w).max(-1)
            assert q.max() < 2**bits and err.max() <= tol


def test_kernels_match_numpy() -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((96, 40)).astype(np.float32)
    x = rng.standard_normal((5, 96)).astype(np.float32)
    table = rng.standard_normal((50, 64)).astype(np.float32)
    ids = np.array([[3, 49, 0]], np.int64)
    for bits in (4, 8):
        node, inits = matmul_nbits(
            onnx.helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"), w, bits, 32, False, 0
        )
        gather, ginits = gather_block_quantized(
            onnx.helper.make_node("Gather", ["t", "ids"], ["e"], name="g"), table, bits, 32, True
        )
        graph = onnx.helper.make_graph(
            [node, gather],
            "g",
            [
                onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 96]),
                onnx.helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, [1, 3]),
            ],
            [
                onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None),
                onnx.helper.make_tensor_value_info("e", onnx.TensorProto.FLOAT, None),
            ],
            inits + ginits,
        )
        model = onnx.helper.make_model(
            graph,
            opset_imports=[
                onnx.helper.make_opsetid("", 21),
                onnx.helper.make_opsetid("com.microsoft", 1),
            ],
        )
        y, e = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        ).run(None, {"x": x, "ids": ids})
        tol = 0.02 if bits == 8 else 0.2
        assert np.abs(y - x @ w).max() <= tol * np.abs(x @ w).max()
        assert np.abs(e - table[ids]).max() <= tol * np.abs(table).max()


def test_fast_gelu_and_smoothing_preserve_the_function(
    tiny_optimum: Path, tokenize, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    model = G.load(tiny_optimum)
    G.keep_outputs(model, ["sentence_embedding"])
    assert fast_gelu(model) == 4
    recipe = Recipe("t", smoothing=(("(q|k|v|gate|up|down)_proj", 0.5),), calibration_samples=16)
    stats = calibrate(model, recipe, TEXTS, tokenize)
    assert smooth(model, recipe.smoothing, stats) == 4 * 6
    G.save(model, tmp_path / "model.onnx")
    ids = tokenize(TEXTS)
    assert cosines(embed(tiny_optimum, ids), embed(tmp_path / "model.onnx", ids)).min() >= 0.99999


def test_calibration_mixes_queries_and_documents_and_never_uses_fidelity_text(
    tiny_checkpoint: Path,
) -> None:
    from embgemma_plugins.onnx_models.export import calibration_texts
    from embgemma_plugins.onnx_models.fidelity import load_corpus

    texts = calibration_texts(tiny_checkpoint, 64)
    assert len(texts) == len(set(texts)) == 64
    queries = [t for t in texts if t.startswith("task: search result | query: ")]
    documents = [t for t in texts if t.startswith("title: none | text: ")]
    assert len(queries) + len(documents) == 64 and min(len(queries), len(documents)) >= 16
    fidelity = set(load_corpus().texts)
    assert not any(t.split(": ", 2)[-1] in fidelity for t in texts)
