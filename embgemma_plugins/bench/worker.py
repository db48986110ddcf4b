"""Measure one runtime in this process; print one ``RESULT {json}`` line.

Run by ``run`` as ``python -m embgemma_plugins.bench.worker SPEC_JSON``, one
fresh process per runtime, so load times start cold(ish) and the peak RSS is the
runtime's own.  ``startup_s`` runs from the parent's spawn to the runtime's library
being imported (interpreter + imports; the sentence-transformers worker also imports
this package, about 0.3 s, because the worker lives in it).  The order inside is
the user's: import, load, warm up, embed all documents in one call (the runtime's
own batching), then one short query at a time.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from embgemma_plugins.bench import corpus
from embgemma_plugins.bench.harness import (
    ONNX,
    Measurement,
    Runtime,
    latencies_ms,
    peak_rss_mb,
    timed,
)

RESULT = "RESULT "
WARMUP_DOCS = 8


@dataclass
class Loaded:
    """A loaded runtime reduced to what the measurement needs."""

    embed_docs: Callable[[list[str]], np.ndarray]
    embed_query: Callable[[str], object]
    count_tokens: Callable[[list[str]], int]
    threads: int | None


def load_onnx(rt: Runtime, batch_tokens: int | None) -> Loaded:
    from embgemma_plugins import EmbeddingGemma

    extra: dict[str, Any] = {"batch_tokens": batch_tokens} if batch_tokens else {}
    m = EmbeddingGemma(rt.model, variant=rt.variant, dimensions=rt.dim, threads=rt.threads,
                       build_missing=False, **extra)
    prompt = m.prompt_for(task="document")
    return Loaded(
        m.embed_documents,
        lambda q: m.embed_queries([q]),
        lambda texts: int(sum(len(x) for x in m.tokenize(texts, prompt).ids)),
        rt.threads,
    )


def load_st(rt: Runtime, batch_size: int) -> Loaded:
    import torch
    from sentence_transformers import SentenceTransformer

    from embgemma_plugins.store.checkpoint import resolve_checkpoint

    if rt.threads:
        torch.set_num_threads(rt.threads)
    # The checkpoint the export uses (cache first, HF_HUB_OFFLINE honoured): a bare
    # hub id makes sentence-transformers ask the gated hub for files it lacks.
    folder, _, _ = resolve_checkpoint(rt.model)
    st = SentenceTransformer(str(folder), device="cpu", truncate_dim=rt.dim)
    prompt = st.prompts.get("document", "")

    def count(texts: list[str]) -> int:
        enc = st.tokenizer([prompt + t for t in texts], truncation=True,
                           max_length=st.max_seq_length)
        return int(sum(len(x) for x in enc["input_ids"]))

    return Loaded(
        lambda texts: st.encode(texts, prompt_name="document", batch_size=batch_size,
                                normalize_embeddings=True, convert_to_numpy=True),
        lambda q: st.encode([q], prompt_name="query", normalize_embeddings=True),
        count,
        torch.get_num_threads(),
    )


def measure(spec: dict[str, Any]) -> Measurement:
    """Measure the runtime described by ``spec`` (see ``run.worker_spec``)."""
    rt = Runtime(**spec["runtime"])
    docs = corpus.documents(spec.get("docs"))
    queries = corpus.queries(spec.get("queries"))
    if rt.kind == ONNX:
        import embgemma_plugins.model  # noqa: F401  (the runtime: part of start-up)

        startup_s = time.time() - float(spec.get("started", time.time()))
        load_s, loaded = timed(lambda: load_onnx(rt, spec.get("batch_tokens")))
    else:
        import sentence_transformers  # noqa: F401

        startup_s = time.time() - float(spec.get("started", time.time()))
        load_s, loaded = timed(lambda: load_st(rt, int(spec.get("st_batch_size", 32))))
    assert isinstance(loaded, Loaded)
    loaded.embed_docs(corpus.spread(docs, WARMUP_DOCS))
    tokens = loaded.count_tokens(docs)
    docs_s, vectors = timed(lambda: loaded.embed_docs(docs))
    lat = latencies_ms(loaded.embed_query, queries)
    out = spec.get("vectors")
    if out:
        np.save(out, np.asarray(vectors, dtype=np.float32))
    return Measurement(rt, startup_s, load_s, len(docs), tokens, docs_s, lat, peak_rss_mb(),
                       loaded.threads, out)


def main(argv: list[str]) -> int:
    result = measure(json.loads(argv[0]))
    print(RESULT + json.dumps(result.to_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
