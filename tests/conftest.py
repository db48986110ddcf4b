"""Session fixtures: the tiny model, exported once, in a private model store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the network


@pytest.fixture(scope="session", autouse=True)
def private_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point the model store at a temporary folder for the whole test session."""
    root = tmp_path_factory.mktemp("store")
    old = os.environ.get("EMBGEMMA_HOME")
    os.environ["EMBGEMMA_HOME"] = str(root)
    yield root
    if old is None:
        os.environ.pop("EMBGEMMA_HOME", None)
    else:
        os.environ["EMBGEMMA_HOME"] = old


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sentence-transformers checkpoint folder of a tiny random gemma3_text model."""
    from tests.tiny_model import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every 12th record of the packaged fidelity corpus: real text, quick to measure."""
    import gzip

    from embgemma_plugins.onnx_models.fidelity import CORPUS

    lines = gzip.decompress(CORPUS.read_bytes()).decode("utf-8").splitlines()[::12]
    path = tmp_path_factory.mktemp("corpus") / "fidelity.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_model(
    tiny_checkpoint: Path, tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The tiny checkpoint exported (Optimum, whole pipeline) as an fp32 variant folder."""
    from embgemma_plugins.onnx_models.export import export_variant

    return export_variant(
        tiny_checkpoint,
        "fp32",
        out=tmp_path_factory.mktemp("v") / "fp32",
        progress=lambda _m: None,
        corpus=tiny_corpus,
    )


@pytest.fixture(scope="session")
def tiny_optimum(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint as Optimum exports it, before any recipe: ``model.onnx``."""
    from embgemma_plugins.onnx_models.export import optimum_export

    return optimum_export(tiny_checkpoint, tmp_path_factory.mktemp("optimum"))


@pytest.fixture(scope="session")
def tokenize(tiny_model: Path):  # type: ignore[no-untyped-def]
    """Texts -> ids as the graph sees them (BOS + pieces + EOS), for building variants."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tiny_model / "tokenizer.model"))
    return lambda texts: [[2, *ids, 1] for ids in sp.encode(list(texts))]


@pytest.fixture(scope="session")
def tiny_gemma(tiny_model: Path):  # type: ignore[no-untyped-def]
    from embgemma_plugins import EmbeddingGemma

    return EmbeddingGemma(tiny_model, threads=1)


@pytest.fixture(scope="session")
def tiny_st(tiny_checkpoint: Path):  # type: ignore[no-untyped-def]
    """The reference implementation on the same tiny checkpoint."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_checkpoint), device="cpu")


def cosines(a, b):  # type: ignore[no-untyped-def]
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
