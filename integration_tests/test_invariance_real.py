"""The real int8 and int4 give every text the vector it has alone, whatever shares its batch.

Texts of the shipped fidelity corpus on both sides of each bound the planner keeps
(benchmarks/invariance.py picks them: up to 64 tokens, up to and past the banded
attention's 576, up to 2,048), embedded one at a time, in every batch the planner forms of
them under several budgets, in one call with a 2,048-token document, and through
``embgemma embed`` with different ``--chunk-rows``: each must be within 1e-6 of its vector
alone (issue 27). ``python -m benchmarks.invariance`` prints the same figures.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from benchmarks.invariance import (
    CHUNK_ROWS,
    MATE_BUDGETS,
    PICK,
    TOL,
    compare,
    describe,
    long_mate,
    pick_texts,
    shuffled_copies,
    token_counts,
)
from embgemma_plugins.batching import plan_batches
from integration_tests.conftest import REAL_MODEL
from tests.cli_process import embed_command

# fewer than the script measures, to keep CI short: still batches of 8 sizes from 1 to 24
BUDGETS = (256, 1024, 16384)


@pytest.fixture(scope="module", params=["int8", "int4"])
def model(request: pytest.FixtureRequest, real_checkpoint: Path):  # type: ignore[no-untyped-def]
    from embgemma_plugins import EmbeddingGemma

    return EmbeddingGemma(REAL_MODEL, variant=request.param)


@pytest.fixture(scope="module")
def texts(model) -> list[str]:  # type: ignore[no-untyped-def]
    return pick_texts(model)


@pytest.fixture(scope="module")
def alone(model, texts: list[str]) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.vstack([model.embed_documents([t]) for t in texts])


def check(got: np.ndarray, alone: np.ndarray, *context: object) -> None:
    figures = compare(got, alone)
    assert figures[0] <= TOL, (*context, describe(figures, len(got)))


def test_the_variant_records_its_bounds(model) -> None:  # type: ignore[no-untyped-def]
    assert model.bounds == (64, 576), "built before batch invariance: rebuild the variant"


def test_every_batch_the_planner_forms(model, texts: list[str], alone: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    lengths = token_counts(model, texts)
    sizes = set()
    try:
        for budget in BUDGETS:
            model.batch_tokens = budget
            sizes |= {len(b) for b in plan_batches(lengths, budget, bounds=model.bounds)}
            check(model.embed_documents(texts), alone, budget)
    finally:
        model.batch_tokens = 1024
    assert max(sizes) >= PICK[(3, 64)] and len(sizes) >= 8, sorted(sizes)


def test_in_one_call_with_a_2048_token_document(model, texts: list[str], alone: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """Under the default budget and one that fits every text beside the long one."""
    mate = long_mate()
    assert model.tokenize([mate]).truncated.all()
    try:
        for budget in MATE_BUDGETS:
            model.batch_tokens = budget
            check(model.embed_documents([*texts, mate])[:-1], alone, budget)
    finally:
        model.batch_tokens = 1024


def test_the_cli_with_other_chunk_rows(  # type: ignore[no-untyped-def]
    model, texts: list[str], alone: np.ndarray, tmp_path: Path
) -> None:
    """Two shuffled copies of the texts: 64 rows a chunk give other batches than 256."""
    order = shuffled_copies(len(texts), copies=2)
    src = tmp_path / "texts.jsonl"
    src.write_text("".join(json.dumps({"text": texts[i]}) + "\n" for i in order), "utf-8")
    for rows in CHUNK_ROWS:
        out = tmp_path / f"rows{rows}.npy"
        done = subprocess.run(
            embed_command(src, out, "--variant", model.variant, "--chunk-rows", str(rows)),
            capture_output=True, text=True, timeout=1800,
        )
        assert done.returncode == 0, done.stderr
        check(np.load(out), alone[order], rows)
