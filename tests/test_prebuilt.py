"""Prebuilt variants: exported with ``--out``, published into a hub cache laid out as
huggingface_hub lays it out, resolved offline by repository id (root and subfolder layouts),
checked file by file, pulled into the store, and tried by a bare model before a build."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from embgemma_plugins import EmbeddingGemma
from embgemma_plugins.cli.main import cli
from embgemma_plugins.errors import DamagedModelError, InvalidArgumentError, ModelNotFoundError
from embgemma_plugins.framework import EmbeddingGemmaSettings
from embgemma_plugins.settings import ModelSettings
from embgemma_plugins.store.files import ORIGIN_FILE
from embgemma_plugins.store.layout import variant_dir
from embgemma_plugins.store.registry import info
from embgemma_plugins.store.resolve import first_use_message
from tests.hubcache import commit_of, publish, repo_folder
from tests.test_verify import flip
from tests.texts import TEXTS

REPO = "acme/tiny-variants"
WEIGHTS = "model.onnx.data"


@pytest.fixture(scope="module")
def exported(tiny_checkpoint: Path, tiny_corpus: Path, tmp_path_factory) -> dict[str, Path]:
    """Variant folders of the tiny model: fp32 written by `embgemma export --out`, int8 by
    the same export (a random tiny model may miss int8's bar: kept anyway)."""
    from embgemma_plugins.onnx_models.export import export_variant

    out = tmp_path_factory.mktemp("exported")
    args = ["export", "--model", str(tiny_checkpoint), "--variant", "fp32", "--out",
            str(out / "fp32"), "--fidelity-corpus", str(tiny_corpus)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    export_variant(tiny_checkpoint, "int8", out=out / "int8", progress=lambda _m: None,
                   allow_below_bar=True, corpus=tiny_corpus)
    return {"fp32": out / "fp32", "int8": out / "int8"}


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache (offline: conftest) and an empty model store, for this test."""
    import huggingface_hub.constants

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("EMBGEMMA_HOME", str(tmp_path / "store"))
    monkeypatch.delenv("EMBGEMMA_VARIANTS_REPO", raising=False)
    return cache


def same(a: EmbeddingGemma, b: EmbeddingGemma) -> bool:
    """Bit for bit, for queries and documents."""
    return np.array_equal(a.embed_queries(TEXTS), b.embed_queries(TEXTS)) and np.array_equal(
        a.embed_documents(TEXTS), b.embed_documents(TEXTS))


def test_root_layout_resolves_offline_by_repo_id(exported, hub):
    folder = publish(exported["fp32"], hub, REPO)
    m = EmbeddingGemma(REPO, variant="fp32")
    assert m.files.root == folder and m.variant == "fp32"
    assert same(m, EmbeddingGemma(exported["fp32"]))
    assert EmbeddingGemma(REPO).files.root == folder  # no variant named: the root's
    with pytest.raises(InvalidArgumentError, match="holds the fp32 variant at its root, not int4"):
        EmbeddingGemma(REPO, variant="int4")
    assert not (Path(os.environ["EMBGEMMA_HOME"]) / "acme--tiny-variants").exists()  # in place


def test_subfolder_layout_holds_several_variants(exported, hub):
    commit = commit_of("both")
    for variant, folder in exported.items():
        publish(folder, hub, REPO, variant, commit)
    for variant, folder in exported.items():
        m = EmbeddingGemma(REPO, variant=variant)
        assert m.files.root == repo_folder(hub, REPO) / "snapshots" / commit / variant
        assert m.variant == variant and same(m, EmbeddingGemma(folder))
    assert EmbeddingGemma(REPO).variant == "int8"  # the default variant


def test_embed_command_takes_a_repository(exported, hub, tmp_path):
    publish(exported["fp32"], hub, REPO, "fp32")
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    for model, out in ((REPO, "repo.npy"), (str(exported["fp32"]), "local.npy")):
        args = ["embed", str(src), str(tmp_path / out), "--model", model, "--variant", "fp32",
                "--task", "query", "-q"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
    assert np.array_equal(np.load(tmp_path / "repo.npy"), np.load(tmp_path / "local.npy"))


def test_a_flipped_byte_in_a_cached_file_is_refused(exported, hub):
    folder = publish(exported["fp32"], hub, REPO)
    flip((folder / WEIGHTS).resolve(), 1234)  # the blob the snapshot links to
    with pytest.raises(DamagedModelError) as e:
        EmbeddingGemma(REPO)
    assert e.value.files == [WEIGHTS]
    assert f"{WEIGHTS}: sha256 differs" in str(e.value)
    assert f"embgemma pull {REPO} --variant fp32" in str(e.value)


@pytest.mark.parametrize("name", ["tokenizer.model", WEIGHTS])
def test_a_file_missing_from_the_cache_is_refused(exported, hub, name):
    folder = publish(exported["fp32"], hub, REPO, "fp32")
    (folder / name).unlink()
    with pytest.raises(DamagedModelError) as e:
        EmbeddingGemma(REPO, variant="fp32")
    assert e.value.files == [name]
    assert f"{name}: not in the local Hugging Face cache, and HF_HUB_OFFLINE=1" in str(e.value)
    assert f"embgemma pull {REPO} --variant fp32" in str(e.value)


def test_pull_installs_a_checked_copy_into_the_store(exported, hub):
    commit = commit_of("pull")
    for variant, folder in exported.items():
        publish(folder, hub, REPO, variant, commit)
    missing = CliRunner().invoke(cli, ["pull", REPO, "--variant", "int4"])
    assert missing.exit_code == 1 and "neither int4/manifest.json nor" in missing.output
    done = CliRunner().invoke(cli, ["pull", REPO, "--variant", "fp32"])
    assert done.exit_code == 0, done.output
    stored = variant_dir(REPO, "fp32")
    assert done.stdout.strip() == str(stored)
    assert json.loads((stored / ORIGIN_FILE).read_text())["commit"] == commit
    shutil.rmtree(repo_folder(hub, REPO))  # the cache is gone: the store's copy serves
    m = EmbeddingGemma(REPO, variant="fp32")
    assert m.files.root == stored and same(m, EmbeddingGemma(exported["fp32"]))
    tokenizer = stored / "tokenizer.model"  # rewritten by some tool: damaged
    data = tokenizer.read_bytes()
    tokenizer.unlink()
    tokenizer.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(DamagedModelError, match=f"embgemma pull {REPO} --variant fp32"):
        EmbeddingGemma(REPO, variant="fp32")
    listed = CliRunner().invoke(cli, ["models"])
    assert listed.exit_code == 1 and "DAMAGED" in listed.output
    assert f"replace it with: embgemma pull {REPO} --variant fp32" in listed.output
    publish(exported["fp32"], hub, REPO, "fp32", commit)
    again = CliRunner().invoke(cli, ["pull", REPO, "--variant", "fp32"])
    assert again.exit_code == 0, again.output
    assert same(EmbeddingGemma(REPO, variant="fp32"), EmbeddingGemma(exported["fp32"]))


def test_a_variants_repository_serves_a_model_before_a_build(
    exported, hub, tiny_checkpoint, monkeypatch, tmp_path
):
    publish(exported["fp32"], hub, REPO, "fp32")
    with pytest.raises(ModelNotFoundError) as e:  # no repository: the build it would need
        EmbeddingGemma(tiny_checkpoint, variant="fp32", build_missing=False)
    assert "embgemma export --model" in str(e.value)
    assert "EMBGEMMA_VARIANTS_REPO" in str(e.value) and "embgemma pull" in str(e.value)
    monkeypatch.setenv("EMBGEMMA_VARIANTS_REPO", REPO)
    m = EmbeddingGemma(tiny_checkpoint, variant="fp32", build_missing=False)
    assert m.files.root.parent.name == "fp32" or m.files.root.name == "fp32"
    assert same(m, EmbeddingGemma(exported["fp32"]))
    with pytest.raises(ModelNotFoundError, match=r"acme/elsewhere has neither fp32/manifest\.json"):
        EmbeddingGemma(tiny_checkpoint, variant="fp32", build_missing=False,
                       variants_repo="acme/elsewhere")  # the option wins over the variable
    foreign = tmp_path / "foreign"
    shutil.copytree(exported["fp32"], foreign)
    manifest = json.loads((foreign / "manifest.json").read_text())
    (foreign / "manifest.json").write_text(json.dumps({**manifest, "model_id": "someone/else"}))
    publish(foreign, hub, "acme/foreign", "fp32")
    with pytest.raises(ModelNotFoundError, match="holds the fp32 variant of someone/else, not of"):
        EmbeddingGemma(tiny_checkpoint, variant="fp32", build_missing=False,
                       variants_repo="acme/foreign")
    done = CliRunner().invoke(cli, ["pull", REPO, "--variant", "fp32"])
    assert done.exit_code == 0, done.output
    shutil.rmtree(repo_folder(hub, REPO))  # pulled: the store's copy serves the model
    m = EmbeddingGemma(tiny_checkpoint, variant="fp32", build_missing=False)
    assert m.files.root == variant_dir(REPO, "fp32")


def test_a_pinned_revision_is_used_and_skips_the_store(exported, hub):
    old = publish(exported["fp32"], hub, REPO, commit=commit_of("old"))
    publish(exported["int8"], hub, REPO, commit=commit_of("new"))  # main
    assert EmbeddingGemma(REPO).variant == "int8"
    assert CliRunner().invoke(cli, ["pull", REPO]).exit_code == 0  # main's int8 in the store
    pinned = EmbeddingGemma(REPO, revision=commit_of("old"))
    assert pinned.files.root == old and pinned.variant == "fp32"


def test_settings_check_the_repository_and_revision():
    with pytest.raises(InvalidArgumentError, match="variants_repo must be a hub repository id"):
        ModelSettings(variants_repo="./folder")
    with pytest.raises(InvalidArgumentError, match="revision must be a non-empty string"):
        ModelSettings(revision=" ")
    section = EmbeddingGemmaSettings(variants_repo=REPO, revision="v1")
    assert section.model_settings() == ModelSettings(variants_repo=REPO, revision="v1")
    with pytest.raises(InvalidArgumentError, match=r"embeddings\.variants_repo: "):
        EmbeddingGemmaSettings.from_config({"variants_repo": "nope"})


def test_the_first_use_message_states_cost_and_the_way_around():
    message = first_use_message("google/embeddinggemma-300m", "int8", ["acme/x is offline"])
    cost = info("int8").build
    assert cost is not None
    assert f"about {cost.minutes:g} minutes and {cost.peak_gb:g} GB of memory" in message
    assert "(no prebuilt variant: acme/x is offline)" in message
    assert "EMBGEMMA_VARIANTS_REPO=ORG/NAME" in message and "embgemma pull ORG/NAME" in message
