"""The real int8 variant as a prebuilt repository: the store's folder published into a
temporary hub cache (laid out as huggingface_hub lays out a download, in a variant
subfolder and at a repository's root) resolves offline by repository id, is checked file by
file, and gives the store's vectors bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from integration_tests.conftest import REAL_MODEL, ROOT, read_jsonl
from tests.hubcache import commit_of, publish, repo_folder


def test_the_store_int8_resolves_by_repository_id(
    real_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    from embgemma_plugins import EmbeddingGemma

    stored = EmbeddingGemma(REAL_MODEL, variant="int8")  # the store's (built on first use)
    hub = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    commit = commit_of("real-int8")
    layouts = {"acme/embeddinggemma-variants": "int8", "acme/embeddinggemma-int8": ""}
    for repo, subfolder in layouts.items():
        publish(stored.files.root, hub, repo, subfolder, commit)
    docs = [r["text"] for r in read_jsonl(ROOT / "integration_tests/data/retrieval.jsonl.gz")]
    docs = docs[:64]
    expected = stored.embed_documents(docs)
    for repo, subfolder in layouts.items():
        m = EmbeddingGemma(repo, variant="int8")
        assert m.files.root == repo_folder(hub, repo) / "snapshots" / commit / subfolder
        assert m.files.manifest == stored.files.manifest
        assert np.array_equal(m.embed_documents(docs), expected)
