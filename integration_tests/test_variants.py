"""Every variant of the real model meets its fidelity bar, and its manifest tells the truth.

The variants are built by ``embgemma export`` into the real store (once; later runs
reuse them), measured by the export against sentence-transformers on the shipped
fidelity corpus, and measured again here from scratch: the manifest's figures must be
what a fresh measurement of the installed files gives.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embgemma_plugins.onnx_models.fidelity import CORPUS, measure_variant
from embgemma_plugins.store.manifest import Manifest
from embgemma_plugins.store.registry import info
from integration_tests.conftest import REAL_MODEL

DIMS = ("768", "512", "256", "128")


@pytest.fixture(scope="module", params=["fp32", "int8", "int4"])
def built(request: pytest.FixtureRequest, real_checkpoint: Path) -> tuple[str, Path]:
    from embgemma_plugins.onnx_models.export import export_variant

    variant: str = request.param
    return variant, export_variant(REAL_MODEL, variant, if_missing=True)


def test_variant_meets_its_bar(built: tuple[str, Path]) -> None:
    variant, folder = built
    manifest = Manifest.read(folder)
    assert manifest.verify(folder) == []
    fidelity = manifest.fidelity
    assert fidelity is not None and fidelity["passed"], fidelity["shortfalls"]
    bar = info(variant).bar
    assert fidelity["size_bytes"] <= bar.max_size_mb * 1e6
    for dims in DIMS:
        figures = fidelity["figures"][dims]
        assert figures["mean_cosine"] >= bar.mean_cosine, dims
        assert figures["min_cosine"] >= bar.min_cosine, dims
        assert figures["top10_overlap"] >= bar.top10_overlap, dims


def test_manifest_figures_equal_a_fresh_measurement(
    built: tuple[str, Path], real_checkpoint: Path
) -> None:
    variant, folder = built
    manifest = Manifest.read(folder)
    fresh = measure_variant(folder, variant, real_checkpoint, manifest.revision, folder.parent)
    recorded = manifest.fidelity
    assert recorded is not None
    assert fresh["corpus"] == recorded["corpus"] and recorded["corpus"]["file"] == CORPUS.name
    assert fresh["size_bytes"] == recorded["size_bytes"]
    for dims in DIMS:
        for key in ("mean_cosine", "min_cosine", "top10_overlap"):
            np.testing.assert_allclose(
                fresh["figures"][dims][key], recorded["figures"][dims][key], atol=2e-5, err_msg=key
            )
