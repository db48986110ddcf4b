"""Model folders, the store, the onnx-community layout, manifests, missing variants."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from embgemma_plugins import EmbeddingGemma
from embgemma_plugins.cli.main import cli
from embgemma_plugins.errors import ModelNotFoundError
from embgemma_plugins.store.layout import list_variants, variant_dir
from embgemma_plugins.store.manifest import Manifest, sha256_file
from tests.texts import TEXTS
from tests.tiny_model import PROMPTS


def test_manifest_records_source_files_versions_and_prompts(tiny_model, tiny_checkpoint):
    manifest = Manifest.read(tiny_model)
    assert manifest.model_id == str(tiny_checkpoint.resolve())
    assert manifest.variant == "fp32"
    assert manifest.prompts == PROMPTS
    assert set(manifest.files) == {
        "model.onnx",
        "model.onnx.data",
        "tokenizer.model",
        "config_sentence_transformers.json",
    }
    for name, digest in manifest.files.items():
        assert sha256_file(tiny_model / name) == digest
    assert manifest.verify(tiny_model) == []
    for package in ("torch", "transformers", "optimum-onnx", "onnxruntime", "embgemma-plugins"):
        assert package in manifest.versions
    assert int(manifest.versions["transformers"].split(".")[1]) >= 57


def test_export_command_installs_into_the_store_and_resolves(
    tiny_checkpoint, tiny_gemma, private_store, tiny_corpus
):
    args = ["export", "--model", str(tiny_checkpoint), "--variant", "fp32"]
    result = CliRunner().invoke(cli, [*args, "--fidelity-corpus", str(tiny_corpus)])
    assert result.exit_code == 0, result.output
    folder = variant_dir(tiny_checkpoint, "fp32")
    assert folder.is_relative_to(private_store) and (folder / "model.onnx").is_file()
    assert folder in [v.path for v in list_variants()]
    m = EmbeddingGemma(tiny_checkpoint, variant="fp32", build_missing=False)
    assert m.files.root == folder
    np.testing.assert_allclose(m.embed_queries(TEXTS), tiny_gemma.embed_queries(TEXTS), atol=1e-6)


def test_fidelity_is_measured_and_recorded(tiny_model, tiny_corpus):
    fidelity = Manifest.read(tiny_model).fidelity
    assert fidelity["passed"] and fidelity["shortfalls"] == []
    assert fidelity["corpus"]["texts"] == len(tiny_corpus.read_text().splitlines())
    for dims in ("768", "512", "256", "128"):
        assert fidelity["figures"][dims]["min_cosine"] >= 0.9999
        assert fidelity["figures"][dims]["top10_overlap"] >= 0.99


def test_a_variant_below_its_bar_is_refused(tiny_checkpoint, tiny_corpus, tmp_path, monkeypatch):
    from embgemma_plugins.store.registry import RECIPES

    impossible = "{ mean_cosine = 1.01, min_cosine = 0.5, top10_overlap = 0.5, max_size_mb = 1e-3 }"
    recipes = tmp_path / "recipes.toml"
    recipes.write_text(re.sub(r"(?m)^(\[fp32\]\n(?:.*\n)*?)bar = .*$", rf"\1bar = {impossible}",
                              RECIPES.read_text(), count=1))
    monkeypatch.setenv("EMBGEMMA_RECIPES", str(recipes))
    args = [
        "export",
        "--model",
        str(tiny_checkpoint),
        "--variant",
        "fp32",
        "--out",
        str(tmp_path / "v"),
    ]
    result = CliRunner().invoke(cli, [*args, "--fidelity-corpus", str(tiny_corpus)])
    assert result.exit_code == 1
    assert "misses its fidelity bar: mean_cosine" in result.output
    # Any real variant is larger than 1 kB, so the size bar is missed as well.
    assert "size " in result.output and "MB > 0.001 MB" in result.output
    assert "--allow-below-bar" in result.output
    assert not (tmp_path / "v").exists()
    kept = CliRunner().invoke(
        cli, [*args, "--fidelity-corpus", str(tiny_corpus), "--allow-below-bar"]
    )
    assert kept.exit_code == 0, kept.output
    record = Manifest.read(tmp_path / "v").fidelity
    assert record["passed"] is False and record["shortfalls"]


def test_missing_variant_error_prints_the_command(tiny_checkpoint):
    with pytest.raises(ModelNotFoundError) as e:
        EmbeddingGemma(tiny_checkpoint, variant="int4", build_missing=False)
    assert f"embgemma export --model {tiny_checkpoint} --variant int4" in str(e.value)


def test_unknown_model_references(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"neither model\.onnx"):
        EmbeddingGemma(tmp_path)
    with pytest.raises(ModelNotFoundError, match="neither an existing folder nor a hub id"):
        EmbeddingGemma(str(tmp_path / "missing"))


def test_onnx_community_layout_with_outputs_in_another_order(
    tiny_model, tiny_optimum, tmp_path, tiny_gemma
):
    """onnx/model.onnx + model.onnx_data, output ``last_hidden_state`` listed first."""
    model = onnx.load(tiny_optimum)  # the plain Optimum graph, as the community ships it
    outputs = list(model.graph.output)
    for o in outputs:
        if o.name == "token_embeddings":
            for node in model.graph.node:
                node.output[:] = ["last_hidden_state" if x == o.name else x for x in node.output]
                node.input[:] = ["last_hidden_state" if x == o.name else x for x in node.input]
            o.name = "last_hidden_state"
    model.graph.ClearField("output")
    model.graph.output.extend(sorted(outputs, key=lambda o: o.name != "last_hidden_state"))
    (tmp_path / "onnx").mkdir()
    onnx.save(
        model,
        tmp_path / "onnx" / "model.onnx",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx_data",
        size_threshold=1024,
    )
    assert (tmp_path / "onnx" / "model.onnx_data").is_file()
    for name in ("tokenizer.model", "config_sentence_transformers.json"):
        shutil.copy(tiny_model / name, tmp_path / name)
    m = EmbeddingGemma(tmp_path)
    assert m.files.onnx == tmp_path / "onnx" / "model.onnx"
    np.testing.assert_allclose(
        m.embed_documents(TEXTS), tiny_gemma.embed_documents(TEXTS), atol=1e-6
    )
    with pytest.raises(ModelNotFoundError, match=r"model_q4\.onnx"):
        EmbeddingGemma(tmp_path, variant="int4")


def test_folder_without_prompt_table_explains(tiny_model, tmp_path, monkeypatch):
    for name in ("model.onnx", "model.onnx.data", "tokenizer.model"):
        shutil.copy(tiny_model / name, tmp_path / name)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "no-cache"))
    m = EmbeddingGemma(tmp_path)
    assert m.embed(["x"], prompt="task: search result | query: ").shape == (1, 768)
    with pytest.raises(ModelNotFoundError, match="no prompt table"):
        m.embed_queries(["x"])


def test_folder_without_prompt_table_uses_the_base_checkpoints(tiny_model, tmp_path):
    from embgemma_plugins.store import hub

    if hub.cached("google/embeddinggemma-300m", "config_sentence_transformers.json") is None:
        pytest.skip("google/embeddinggemma-300m is not in the Hugging Face cache")
    for name in ("model.onnx", "model.onnx.data", "tokenizer.model"):
        shutil.copy(tiny_model / name, tmp_path / name)
    assert dict(EmbeddingGemma(tmp_path).prompts.prompts) == PROMPTS


def test_manifest_read_errors(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelNotFoundError, match="not valid JSON"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"variant": "fp32"}))
    with pytest.raises(ModelNotFoundError, match="lacks required fields"):
        Manifest.read(tmp_path)
