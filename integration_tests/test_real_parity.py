"""The fp32 export reproduces sentence-transformers on the real weights."""

from __future__ import annotations

import re

import numpy as np
import pytest

from embgemma_plugins.literal import is_text
from integration_tests.conftest import ROOT, read_jsonl

CORPUS = ROOT / "onnx_models" / "data" / "fidelity.jsonl.gz"
# The model card's example (README.md of the checkpoint) and its published scores.
CARD_QUERY = "Which planet is known as the Red Planet?"
CARD_DOCUMENTS = [
    "Venus is often called Earth's twin because of its similar size and proximity.",
    "Mars, known for its reddish appearance, is often referred to as the Red Planet.",
    "Jupiter, the largest planet in our solar system, has a prominent red spot.",
    "Saturn, famous for its rings, is sometimes mistaken for the Red Planet.",
]
CARD_SCORES = [0.3011, 0.6359, 0.4930, 0.4889]
# The checkpoint's prompt table as EMBEDDINGGEMMA.md states it.
REAL_PROMPTS = {
    "query": "task: search result | query: ",
    "Retrieval-query": "task: search result | query: ",
    "document": "title: none | text: ",
    "Retrieval-document": "title: none | text: ",
    "STS": "task: sentence similarity | query: ",
    "Classification": "task: classification | query: ",
    "Clustering": "task: clustering | query: ",
    "InstructionRetrieval": "task: code retrieval | query: ",
    "Summarization": "task: summarization | query: ",
}


@pytest.fixture(scope="module")
def reference(real_fp32, real_checkpoint):
    """sentence-transformers vectors of the fidelity corpus (computed by the export, cached)."""
    from embgemma_plugins.onnx_models.fidelity import load_corpus
    from embgemma_plugins.onnx_models.reference import reference_vectors

    corpus = load_corpus(CORPUS)
    cache = real_fp32.files.root.parent
    return corpus, reference_vectors(real_checkpoint, real_checkpoint.name, corpus, cache)


def test_fp32_matches_sentence_transformers_on_real_text(real_fp32, reference):
    """240 real texts: 24 over 600 tokens (to 1781), 8 languages, code; mixed batches."""
    corpus, ref = reference
    records = read_jsonl(CORPUS)
    lengths = real_fp32.tokenize(corpus.texts).lengths
    long = np.flatnonzero(lengths > 600)[::4][:24]
    rest = np.flatnonzero(lengths <= 600)[::3][:216]
    rows = np.concatenate([long, rest])
    assert len(rows) >= 200 and lengths[rows].max() > 1500
    assert {"ru", "ja", "zh", "ko", "de"} <= {records[i]["lang"] for i in rows}
    assert "code" in {records[i]["kind"] for i in rows}
    prompts = [real_fp32.prompt_for(task=corpus.tasks()[i]) for i in rows]
    ours = real_fp32.embed_tokens(real_fp32.tokenize([corpus.texts[i] for i in rows], prompts))
    cos = (ours.astype(np.float64) * ref[rows]).sum(1)
    assert cos.min() >= 0.9999, (float(cos.min()), int(rows[cos.argmin()]))


def test_model_card_example(real_fp32):
    scores = real_fp32.embed_queries([CARD_QUERY]) @ real_fp32.embed_documents(CARD_DOCUMENTS).T
    np.testing.assert_allclose(scores[0], CARD_SCORES, atol=0.002)


def test_prompt_table_is_the_checkpoints(real_fp32):
    for name, prompt in REAL_PROMPTS.items():
        assert real_fp32.prompt_for(task=name) == prompt


def test_sentencepiece_ids_equal_the_hugging_face_tokenizer(real_fp32, real_checkpoint):
    texts = [r["text"] for r in read_jsonl(CORPUS)]
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(real_checkpoint))
    # Control tokens look like <bos> or [multimodal], and user text never becomes one of
    # them here (docs/reliability.md); Gemma's other added tokens (runs of spaces, newlines,
    # tabs, HTML tags) are ordinary pieces both tokenizers share.
    specials = [
        t.content
        for t in hf.added_tokens_decoder.values()
        if re.fullmatch(r"<[^<>\s]+>|\[[^\[\]\s]+\]", t.content) and not is_text(t.content)
    ]
    plain = [t for t in texts if not any(s in t for s in specials)]
    assert len(plain) >= 0.99 * len(texts)
    ours = real_fp32.tokenize(plain).ids
    theirs = hf(plain, truncation=True, max_length=2048)["input_ids"]
    mismatched = [t[:60] for t, a, b in zip(plain, ours, theirs, strict=True) if a.tolist() != b]
    assert mismatched == []
