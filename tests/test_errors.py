"""Bad input and bad output raise errors that name the problem."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from embgemma_plugins import EmbeddingGemma
from embgemma_plugins.errors import (
    EmbeddingGemmaError,
    InvalidArgumentError,
    ModelNotFoundError,
    NonFiniteEmbeddingError,
)
from embgemma_plugins.maths import check_finite
from embgemma_plugins.tokenizer import Tokenizer


def test_non_string_item_names_its_index(tiny_gemma):
    with pytest.raises(InvalidArgumentError, match=r"texts\[2\] is int"):
        tiny_gemma.embed(["a", "b", 3])
    with pytest.raises(InvalidArgumentError, match=r"texts\[0\] is NoneType"):
        tiny_gemma.embed_queries([None])


def test_a_bare_string_is_refused(tiny_gemma):
    with pytest.raises(InvalidArgumentError, match="not a single string"):
        tiny_gemma.embed("hello")


def test_errors_are_project_errors_and_builtins():
    assert issubclass(InvalidArgumentError, ValueError)
    assert issubclass(InvalidArgumentError, EmbeddingGemmaError)
    assert issubclass(ModelNotFoundError, FileNotFoundError)
    assert issubclass(NonFiniteEmbeddingError, ValueError)


def test_bad_options_are_refused(tiny_model):
    with pytest.raises(InvalidArgumentError, match="max_length"):
        EmbeddingGemma(tiny_model, max_length=4096)
    with pytest.raises(InvalidArgumentError, match="batch_tokens"):
        EmbeddingGemma(tiny_model, batch_tokens=0)
    with pytest.raises(InvalidArgumentError, match="threads"):
        EmbeddingGemma(tiny_model, threads=0)
    with pytest.raises(InvalidArgumentError, match="variant must be one of"):
        EmbeddingGemma(tiny_model, variant="int3")
    with pytest.raises(InvalidArgumentError, match="holds the fp32 variant, not int8"):
        EmbeddingGemma(tiny_model, variant="int8")


def test_check_finite_names_the_input_indices():
    x = np.ones((4, 3), dtype=np.float32)
    x[1, 2] = np.nan
    x[3, 0] = np.inf
    with pytest.raises(NonFiniteEmbeddingError, match=r"index \[7, 9\]") as e:
        check_finite(x, np.array([5, 7, 8, 9]))
    assert e.value.indices == [7, 9]
    check_finite(np.ones((2, 2), dtype=np.float32), np.array([0, 1]))


def _nan_graph(path, threshold):
    """sentence_embedding = sqrt(first piece id - threshold): NaN when that id is below it."""
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["n", "l"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["n", "l"])
    out = helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["n", 768])
    init = [
        helper.make_tensor("one", TensorProto.INT64, [], [1]),
        helper.make_tensor("hundred", TensorProto.FLOAT, [], [float(threshold)]),
        helper.make_tensor("ones", TensorProto.FLOAT, [1, 768], [1.0] * 768),
        helper.make_tensor("axis", TensorProto.INT64, [1], [1]),
    ]
    nodes = [
        helper.make_node("Gather", ["input_ids", "one"], ["first"], axis=1),
        helper.make_node("Cast", ["first"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["f", "hundred"], ["d"]),
        helper.make_node("Sqrt", ["d"], ["s"]),
        helper.make_node("Unsqueeze", ["s", "axis"], ["col"]),
        helper.make_node("Mul", ["col", "ones"], ["sentence_embedding"]),
        helper.make_node("Identity", ["attention_mask"], ["unused"]),
    ]
    graph = helper.make_graph(nodes, "nan", [ids, mask], [out], init)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_nan_output_raises_naming_the_inputs(tiny_model, tmp_path):
    for name in ("tokenizer.model", "config_sentence_transformers.json"):
        shutil.copy(tiny_model / name, tmp_path / name)
    texts = ["hello", "Привет", "world", "東京", "zzz", "a b c"]
    first = [int(ids[1]) for ids in Tokenizer(tmp_path / "tokenizer.model").encode(texts, 99).ids]
    threshold = sorted(first)[len(first) // 2]
    _nan_graph(tmp_path / "model.onnx", threshold)
    m = EmbeddingGemma(tmp_path)
    expected = [i for i, f in enumerate(first) if f < threshold]
    assert 0 < len(expected) < len(texts), first
    with pytest.raises(NonFiniteEmbeddingError) as e:
        m.embed(texts)
    assert e.value.indices == expected
    fine = [t for i, t in enumerate(texts) if i not in expected]
    assert np.isfinite(m.embed(fine)).all()


def test_graph_without_sentence_embedding_is_refused(tiny_model, tmp_path):
    model = onnx.load(tiny_model / "model.onnx")
    for o in model.graph.output:
        if o.name == "sentence_embedding":
            model.graph.output.remove(o)
            break
    shutil.copy(tiny_model / "tokenizer.model", tmp_path / "tokenizer.model")
    onnx.save(model, tmp_path / "model.onnx")
    with pytest.raises(InvalidArgumentError, match="no 'sentence_embedding' output"):
        EmbeddingGemma(tmp_path)
