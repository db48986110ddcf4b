"""Reference and candidate vectors on the fidelity corpus.

The reference is sentence-transformers on the source checkpoint (fp32), the slowest part
of a first build: about 6 minutes on 2 cores. It is computed once per (checkpoint revision,
corpus), in a child process (``child.py``: torch's memory is returned when it ends), and
cached beside the store's variants. For the official checkpoint's revision and the shipped
corpus it ships with the package (``data/reference-<revision>-<corpus>.npz``: the cached
file of this machine, float32, so the figures are the ones a computed reference gives, to
the last digit), and a first build needs no sentence-transformers pass at all.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .corpus import Corpus
from .steps import Steps

DATA = Path(__file__).with_name("data")
Done = Callable[[int], None]


def _cache_file(folder: Path, revision: str | None, checkpoint: Path, corpus: Corpus) -> Path:
    source = revision or hashlib.sha1(str(checkpoint.resolve()).encode()).hexdigest()[:12]
    return folder / f"reference-{source[:12]}-{corpus.digest}.npy"


def shipped_file(revision: str | None, corpus: Corpus) -> Path | None:
    """The packaged reference of ``revision`` on ``corpus``, if there is one."""
    if not revision:
        return None
    path = DATA / f"reference-{revision[:12]}-{corpus.digest}.npz"
    return path if path.is_file() else None


def st_vectors(checkpoint: Path, corpus: Corpus, done: Done | None = None) -> np.ndarray:
    """768-d sentence-transformers vectors of the corpus (queries with the query prompt);
    ``done(n)`` after each batch of ``n`` texts (a forward hook: the batches are
    sentence-transformers' own)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(checkpoint), device="cpu")
    if done is not None:
        model.register_forward_hook(lambda _m, _i, out: done(len(out["sentence_embedding"])))
    out = np.empty((len(corpus.texts), 768), dtype=np.float32)
    for task in sorted(set(corpus.tasks())):
        rows = [i for i, t in enumerate(corpus.tasks()) if t == task]
        out[rows] = model.encode(
            [corpus.texts[i] for i in rows], prompt_name=task, batch_size=16, convert_to_numpy=True
        )
    return out


def reference_vectors(
    checkpoint: Path,
    revision: str | None,
    corpus: Corpus,
    cache_dir: Path,
    corpus_file: Path | None = None,
    steps: Steps | None = None,
    verbose: bool = False,
) -> np.ndarray:
    """768-d sentence-transformers vectors of the corpus: cached, shipped, or computed (in a
    child process when the corpus is a file it can read, else here), with a bar."""
    path = _cache_file(cache_dir, revision, checkpoint, corpus)
    if path.is_file():
        cached: np.ndarray = np.load(path)
        return cached
    shipped = shipped_file(revision, corpus)
    if shipped is not None:
        with np.load(shipped) as data:
            packaged: np.ndarray = data["vectors"]
            return packaged
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    steps = steps or Steps(lambda _m: None)
    steps("the fp32 reference: sentence-transformers on the fidelity corpus (once per "
          "checkpoint revision; about 6 minutes on 2 cores)")
    with steps.count("reference vectors", len(corpus.texts), "texts") as done:
        if corpus_file is not None:
            from .child import run

            run("reference", [str(checkpoint), str(corpus_file), str(tmp)], done, verbose)
        else:
            np.save(tmp, st_vectors(checkpoint, corpus, done))
    out: np.ndarray = np.load(tmp)
    tmp.replace(path)
    return out


def candidate_vectors(folder: Path, corpus: Corpus, done: Done | None = None) -> np.ndarray:
    """768-d vectors of the corpus from the variant in ``folder`` (our runtime)."""
    from embgemma_plugins.model import EmbeddingGemma

    model = EmbeddingGemma(folder, build_missing=False)
    prompts = [model.prompt_for(task=t) for t in corpus.tasks()]
    return model.embed_tokens(model.tokenize(corpus.texts, prompts), done)
