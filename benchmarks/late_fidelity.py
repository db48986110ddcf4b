"""Fidelity of the ``token_states`` output on the real weights, measured like the sentence
vector's: against sentence-transformers' ``token_embeddings`` passed through its own Dense
modules (the reference per-token states), on the fidelity corpus (onnx_models/data).

Per variant: cosine of every token's state to the reference (mean / minimum over all
tokens of all texts); cosine of pooled spans (the late-chunk vectors of four spans per
text: whole text, halves, a middle third) to the reference spans; and how far the pool of
a whole text's states is from the variant's own ``sentence_embedding`` (they must agree:
head(mean x) = mean(head x)) and from sentence-transformers' sentence vector::

    flock /tmp/heavy.lock python -m benchmarks.late_fidelity --variant fp32 --variant int8
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from embgemma_plugins import EmbeddingGemma
from embgemma_plugins.onnx_models.corpus import load_corpus
from embgemma_plugins.session import OUTPUT_NAME, TOKEN_STATES
from embgemma_plugins.store.layout import DEFAULT_MODEL


def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    out: np.ndarray = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    return out


def reference(texts: list[str]) -> list[np.ndarray]:
    """sentence-transformers' per-token states through its Dense modules, per text."""
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(DEFAULT_MODEL, device="cpu")
    out = []
    with torch.no_grad():
        for text in texts:
            features = st.tokenize([text])
            tokens = st[0](features)["token_embeddings"][0]
            out.append(st[3](st[2]({"sentence_embedding": tokens}))["sentence_embedding"].numpy())
    return out


def spans(n: int) -> list[tuple[int, int]]:
    return [(0, n), (0, n // 2), (n // 2, n), (n // 3, 2 * n // 3)]


def measure(variant: str, texts: list[str], ref: list[np.ndarray]) -> dict[str, Any]:
    model = EmbeddingGemma(DEFAULT_MODEL, variant, build_missing=False)
    per_token, pooled, own, to_st = [], [], [], []
    for text, r in zip(texts, ref, strict=True):
        ids = model.tokenizer.encode([text], 2048).ids[0][None, :]
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        states, sentence = model.session.run([TOKEN_STATES, OUTPUT_NAME], feeds)
        states = states[0]
        per_token.append(cos(states, r))
        for a, b in spans(len(states)):
            if b > a:
                pooled.append(cos(states[a:b].mean(0), r[a:b].mean(0)))
        whole = states.mean(0)
        own.append(cos(whole, sentence[0]))
        to_st.append(cos(whole, r.mean(0)))
    tokens = np.concatenate(per_token)
    return {"variant": model.variant, "texts": len(texts), "tokens": len(tokens),
            "token_mean": tokens.mean(), "token_min": tokens.min(),
            "span_mean": np.mean(pooled), "span_min": np.min(pooled),
            "whole_vs_own_sentence_min": np.min(own), "whole_vs_st_mean": np.mean(to_st),
            "whole_vs_st_min": np.min(to_st)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", action="append")
    args = p.parse_args(argv)
    corpus = load_corpus()
    variants = args.variant or ["fp32", "int8", "int4"]
    table = EmbeddingGemma(DEFAULT_MODEL, variants[0], build_missing=False).prompts
    texts = [table.prompt(t) + x for t, x in zip(corpus.tasks(), corpus.texts, strict=True)]
    ref = reference(texts)
    for variant in variants:
        row = measure(variant, texts, ref)
        print(" ".join(f"{k}={v:.5f}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in row.items()), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
