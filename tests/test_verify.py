"""Never a session on damaged weights: variant folders are checked against their manifests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from embgemma_plugins import EmbeddingGemma
from embgemma_plugins.cli.main import cli
from embgemma_plugins.errors import DamagedModelError, ModelNotFoundError
from embgemma_plugins.store.layout import variant_dir
from embgemma_plugins.store.manifest import Manifest
from embgemma_plugins.store.verify import check_folder

WEIGHTS = "model.onnx.data"


@pytest.fixture
def copy(tiny_model: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "variant"
    shutil.copytree(tiny_model, folder)
    return folder


def flip(path: Path, at: int) -> None:
    """Change one byte and keep the size (and restore the mtime: a copy tool might)."""
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_the_weights_file_is_recorded(copy: Path) -> None:
    assert WEIGHTS in Manifest.read(copy).files and (copy / WEIGHTS).stat().st_size > 1000


def test_a_flipped_byte_is_refused_naming_the_file(copy: Path) -> None:
    flip(copy / WEIGHTS, 1234)
    with pytest.raises(DamagedModelError) as e:
        EmbeddingGemma(copy)
    assert e.value.files == [WEIGHTS]
    message = str(e.value)
    assert f"{WEIGHTS}: sha256 differs" in message and "was not loaded" in message
    assert "embgemma export --model " in message and f"--out {copy}" in message


@pytest.mark.parametrize("name", ["tokenizer.model", WEIGHTS, "config_sentence_transformers.json"])
def test_a_missing_file_is_refused(copy: Path, name: str) -> None:
    (copy / name).unlink()
    with pytest.raises(DamagedModelError, match=f"{name}: missing"):
        EmbeddingGemma(copy)


def test_a_truncated_file_is_refused(copy: Path) -> None:
    path = copy / "tokenizer.model"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DamagedModelError, match=r"tokenizer\.model: sha256 differs"):
        EmbeddingGemma(copy)


def test_damage_after_a_verified_load_is_still_seen(copy: Path) -> None:
    EmbeddingGemma(copy)  # verified: digests remembered
    first = check_folder(copy, Manifest.read(copy))
    assert first.bad == {} and first.checked == 0
    assert first.trusted == len(Manifest.read(copy).files)
    data = (copy / WEIGHTS).read_bytes()
    (copy / WEIGHTS).write_bytes(data[:-3000] + bytes(3000))  # zeroed: new mtime
    with pytest.raises(DamagedModelError, match=WEIGHTS):
        EmbeddingGemma(copy)


def test_folders_without_a_manifest_fail_with_a_sentence(copy: Path) -> None:
    (copy / "manifest.json").unlink()
    (copy / "tokenizer.model").write_bytes(b"not a tokenizer")
    with pytest.raises(ModelNotFoundError, match="not a readable SentencePiece tokenizer"):
        EmbeddingGemma(copy)


def test_a_truncated_graph_without_a_manifest_fails_with_a_sentence(copy: Path) -> None:
    (copy / "manifest.json").unlink()
    graph = copy / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:2000])
    with pytest.raises(ModelNotFoundError, match=r"ONNX Runtime cannot load .*model\.onnx"):
        EmbeddingGemma(copy)


def test_models_lists_damage_and_verify_rehashes(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMBGEMMA_HOME", str(tmp_path / "store"))  # others' variants not listed
    stored = variant_dir("acme/tiny", "fp32")
    shutil.copytree(tiny_model, stored)
    try:
        ok = CliRunner().invoke(cli, ["models", "--verify"])
        assert ok.exit_code == 0, ok.output
        assert "meets bar" in ok.output and "verified 1 of 1 variant(s)" in ok.output
        flip(stored / WEIGHTS, 99)  # same size and mtime: only a full rehash sees it
        assert CliRunner().invoke(cli, ["models"]).exit_code == 0
        bad = CliRunner().invoke(cli, ["models", "--verify"])
        assert bad.exit_code == 1
        assert "DAMAGED" in bad.output and f"{WEIGHTS}: sha256 differs" in bad.output
        assert "replace it with: embgemma export --model" in bad.output
    finally:
        shutil.rmtree(stored.parent)
