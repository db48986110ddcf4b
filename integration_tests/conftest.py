"""Fixtures on the real google/embeddinggemma-300m weights.

Every test here skips, saying why, when the Hugging Face cache lacks the checkpoint
(seed it with ``python3 ../shared/models/fetch_embeddinggemma.py``).  Variants are
built into the real model store once and reused by later runs.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REAL_MODEL = "google/embeddinggemma-300m"
ROOT = Path(__file__).resolve().parents[1]
# The store the user (or CI) chose, read at collection, before any unit-test fixture
# points EMBGEMMA_HOME at a temporary folder for the rest of the session.
USER_STORE = os.environ.get("EMBGEMMA_HOME")


@pytest.fixture(scope="session", autouse=True)
def real_store() -> Iterator[None]:
    """Real-weight variants live in the real model store, so later runs reuse them."""
    private = os.environ.pop("EMBGEMMA_HOME", None)
    if USER_STORE is not None:
        os.environ["EMBGEMMA_HOME"] = USER_STORE
    yield
    os.environ.pop("EMBGEMMA_HOME", None)
    if private is not None:
        os.environ["EMBGEMMA_HOME"] = private


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a ``.jsonl`` or ``.jsonl.gz`` file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="session")
def real_checkpoint() -> Path:
    from embgemma_plugins.store import hub

    found = hub.cached(REAL_MODEL, "model.safetensors")
    if found is None:
        pytest.skip(
            f"{REAL_MODEL} is not in the Hugging Face cache; "
            "run python3 ../shared/models/fetch_embeddinggemma.py"
        )
    return found.parent


@pytest.fixture(scope="session")
def real_fp32(real_checkpoint: Path):  # type: ignore[no-untyped-def]
    """The fp32 variant of the real model (built into the store on first use)."""
    from embgemma_plugins import EmbeddingGemma

    return EmbeddingGemma(REAL_MODEL, variant="fp32")


@pytest.fixture(scope="session")
def real_st(real_checkpoint: Path):  # type: ignore[no-untyped-def]
    """sentence-transformers on the same checkpoint: the reference."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(REAL_MODEL, device="cpu")
