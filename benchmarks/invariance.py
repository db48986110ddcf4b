"""How far a text's vector moves with its batch mates: the figures of docs/variants.md's
"Batch invariance" (issue 27), and the texts integration_tests/test_invariance_real.py uses.

Run from the repository root, under the heavy lock::

    python -m benchmarks.invariance FOLDER               # the runtime as it is
    python -m benchmarks.invariance FOLDER --unbounded   # batches planned without bounds

Texts of the fidelity corpus on both sides of each length bound (44: up to 64 tokens, 65
to 576, 577 to 2,048, document prompt included), each embedded alone, then: in the batches
the planner forms of all of them under several budgets; in one call with a 2,048-token
document (under the default budget and one that fits them beside it); and three shuffled
copies in chunks of rows, as ``embgemma embed --chunk-rows`` embeds them. Prints, per
scenario, the largest difference to the text alone, the lowest cosine, and how many rows
moved by more than 1e-6. ``--unbounded`` plans as the runtime did before the bounds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence

import numpy as np

from embgemma_plugins import EmbeddingGemma
from embgemma_plugins.bench.harness import cosine_stats
from embgemma_plugins.onnx_models.corpus import load_corpus

TOL = 1e-6
BUDGETS = (256, 512, 1024, 4096, 16384)  # 1024 is the default
MATE_BUDGETS = (1024, 1 << 16)
CHUNK_ROWS = (64, 256)
PICK = {(3, 64): 16, (65, 576): 24, (577, 2048): 4}  # token lengths (prompt included): texts


def token_counts(model: EmbeddingGemma, texts: list[str]) -> list[int]:
    """Tokens of each text as a document, prompt included, as the planner counts them."""
    return [len(ids) for ids in model.tokenize(texts, model.prompt_for("document")).ids]


def pick_texts(model: EmbeddingGemma) -> list[str]:
    """Corpus texts spread evenly over the length ranges of PICK, shortest range first."""
    corpus = load_corpus().texts
    lengths = token_counts(model, corpus)
    picked = []
    for (low, high), count in PICK.items():
        inside = [t for t, n in zip(corpus, lengths, strict=True) if low <= n <= high]
        if len(inside) < count:
            raise ValueError(f"the corpus has {len(inside)} texts of {low}-{high} tokens")
        picked += [inside[int(i)] for i in np.linspace(0, len(inside) - 1, count)]
    return picked


def long_mate() -> str:
    """A document the runtime cuts at 2,048 tokens: the corpus's three longest texts joined."""
    return " ".join(sorted(load_corpus().texts, key=len)[-3:])


def shuffled_copies(count: int, copies: int = 3) -> np.ndarray:
    """Shuffled copies of the text indices: the rows given to the CLI."""
    return np.random.default_rng(0).permutation(np.tile(np.arange(count), copies))


def compare(got: np.ndarray, alone: np.ndarray) -> tuple[float, float, int]:
    """Largest difference to the vectors alone, lowest cosine, rows moved past TOL."""
    diff = np.abs(got - alone).max(axis=1)
    return float(diff.max()), cosine_stats(got, alone)[1], int((diff > TOL).sum())


def describe(figures: tuple[float, float, int], rows: int) -> str:
    most, cos, moved = figures
    return f"max abs {most:.2g}, min cosine {cos:.6f}, {moved}/{rows} rows > {TOL:g}"


def scenarios(
    model: EmbeddingGemma, texts: list[str]
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, vectors, the same rows' vectors alone) for every scenario."""
    alone = np.vstack([model.embed_documents([t]) for t in texts])
    default = model.batch_tokens
    try:
        for budget in BUDGETS:
            model.batch_tokens = budget
            yield f"planner batches, batch_tokens {budget}", model.embed_documents(texts), alone
        mate = long_mate()
        for budget in MATE_BUDGETS:
            model.batch_tokens = budget
            got = model.embed_documents([*texts, mate])[:-1]
            yield f"in one call with a 2,048-token document, batch_tokens {budget}", got, alone
    finally:
        model.batch_tokens = default
    order = shuffled_copies(len(texts))
    for rows in CHUNK_ROWS:  # embgemma embed: each chunk of rows in one call
        got = np.vstack([model.embed_documents([texts[i] for i in order[s:s + rows]])
                         for s in range(0, len(order), rows)])
        yield f"chunks of {rows} rows (embgemma embed --chunk-rows {rows})", got, alone[order]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="a variant folder (model.onnx, tokenizer, prompts)")
    p.add_argument("--unbounded", action="store_true", help="plan batches without bounds")
    args = p.parse_args(argv)
    model = EmbeddingGemma(args.folder, build_missing=False)
    if args.unbounded:
        model.bounds = ()
    texts = pick_texts(model)
    print(f"{args.folder}: bounds {model.bounds}, {len(texts)} texts")
    for name, got, alone in scenarios(model, texts):
        print(f"| {name} | {describe(compare(got, alone), len(got))} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
