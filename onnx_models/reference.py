"""Reference and candidate vectors on the fidelity corpus.

The reference is sentence-transformers on the source checkpoint, computed once per
(checkpoint revision, corpus) and cached beside the store's variants, because
every variant of a model is measured against the same vectors and the reference is
the slowest part of an export.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .corpus import Corpus


def _cache_file(folder: Path, revision: str | None, checkpoint: Path, corpus: Corpus) -> Path:
    source = revision or hashlib.sha1(str(checkpoint.resolve()).encode()).hexdigest()[:12]
    return folder / f"reference-{source[:12]}-{corpus.digest}.npy"


def reference_vectors(
    checkpoint: Path, revision: str | None, corpus: Corpus, cache_dir: Path
) -> np.ndarray:
    """768-d sentence-transformers vectors of the corpus (queries with the query prompt)."""
    path = _cache_file(cache_dir, revision, checkpoint, corpus)
    if path.is_file():
        cached: np.ndarray = np.load(path)
        return cached
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(checkpoint), device="cpu")
    out = np.empty((len(corpus.texts), 768), dtype=np.float32)
    for task in sorted(set(corpus.tasks())):
        rows = [i for i, t in enumerate(corpus.tasks()) if t == task]
        out[rows] = model.encode(
            [corpus.texts[i] for i in rows], prompt_name=task, batch_size=16, convert_to_numpy=True
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, out)
    tmp.replace(path)
    return out


def candidate_vectors(folder: Path, corpus: Corpus) -> np.ndarray:
    """768-d vectors of the corpus from the variant in ``folder`` (our runtime)."""
    from embgemma_plugins.model import EmbeddingGemma

    model = EmbeddingGemma(folder, build_missing=False)
    prompts = [model.prompt_for(task=t) for t in corpus.tasks()]
    return model.embed_tokens(model.tokenize(corpus.texts, prompts))
