"""A tiny, randomly initialised EmbeddingGemma look-alike for fast unit tests.

Same architecture family and pipeline as the real model (``gemma3_text`` with
bidirectional attention and sliding-window layers, mean pooling with the prompt
included, two bias-free Dense layers, normalisation, 768-d output) and a real but
tiny SentencePiece vocabulary with Gemma's special-token ids and options, so every
code path of the runtime runs on it in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

# Text for the tiny vocabulary: several scripts and some code, so byte fallback,
# digits and whitespace handling are all exercised.
_CORPUS = [
    "Beautiful is better than ugly. Explicit is better than implicit. Simple is better "
    "than complex. Readability counts. Errors should never pass silently.",
    "The quick brown fox jumps over the lazy dog while 42 cats watch from the window.",
    "EmbeddingGemma turns sentences, paragraphs and documents into vectors for search.",
    "Mars, known for its reddish appearance, is often referred to as the Red Planet.",
    "Привет, мир! Это пример текста на русском языке для токенизатора.",
    "東京は日本の首都です。検索のための埋め込みモデル。",
    "def add(a: int, b: int) -> int:\n    return a + b  # 12345 67890\n",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "SELECT id, title FROM documents WHERE score > 0.75 ORDER BY score DESC;",
]

#: The checkpoint's prompt table, as google/embeddinggemma-300m ships it.
PROMPTS = {
    "query": "task: search result | query: ",
    "document": "title: none | text: ",
    "BitextMining": "task: search result | query: ",
    "Clustering": "task: clustering | query: ",
    "Classification": "task: classification | query: ",
    "InstructionRetrieval": "task: code retrieval | query: ",
    "MultilabelClassification": "task: classification | query: ",
    "PairClassification": "task: sentence similarity | query: ",
    "Reranking": "task: search result | query: ",
    "Retrieval": "task: search result | query: ",
    "Retrieval-query": "task: search result | query: ",
    "Retrieval-document": "title: none | text: ",
    "STS": "task: sentence similarity | query: ",
    "Summarization": "task: summarization | query: ",
}

HIDDEN = 64
SLIDING_WINDOW = 8


def train_sentencepiece(folder: Path) -> Path:
    import sentencepiece as spm

    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(_CORPUS * 20), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(folder / "tokenizer"),
        vocab_size=600,
        model_type="bpe",
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        pad_piece="<pad>",
        eos_piece="<eos>",
        bos_piece="<bos>",
        unk_piece="<unk>",
        user_defined_symbols=["<mask>"],
        character_coverage=1.0,
        minloglevel=2,
        num_threads=1,
    )
    corpus.unlink()
    (folder / "tokenizer.vocab").unlink()
    return folder / "tokenizer.model"


def build_checkpoint(folder: Path, seed: int = 0) -> Path:
    """Write a sentence-transformers checkpoint folder of the tiny model."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import Gemma3TextConfig, Gemma3TextModel, GemmaTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    spm_file = train_sentencepiece(folder)
    tokenizer = GemmaTokenizerFast(
        vocab_file=str(spm_file), add_bos_token=True, add_eos_token=True, padding_side="right"
    )
    config = Gemma3TextConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=HIDDEN,
        intermediate_size=96,
        num_hidden_layers=4,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        query_pre_attn_scalar=32,
        max_position_embeddings=2048,
        sliding_window=SLIDING_WINDOW,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
        use_bidirectional_attention=True,
        rope_theta=1_000_000.0,
        rope_local_base_freq=10_000.0,
        hidden_activation="gelu_pytorch_tanh",
        initializer_range=0.2,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    torch.manual_seed(seed)
    transformer_dir = folder / "_transformer"
    transformer = Gemma3TextModel(config).eval()
    with torch.no_grad():  # trained RMSNorm scales differ per channel; zeros would be shared
        for name, weight in transformer.named_parameters():  # constants in the ONNX graph
            if name.endswith("norm.weight"):
                weight.normal_(0.0, 0.3)
    transformer.save_pretrained(transformer_dir)
    tokenizer.save_pretrained(transformer_dir)
    modules = [
        models.Transformer(str(transformer_dir), max_seq_length=2048),
        models.Pooling(HIDDEN, pooling_mode="mean", include_prompt=True),
        models.Dense(HIDDEN, 256, bias=False, activation_function=torch.nn.Identity()),
        models.Dense(256, 768, bias=False, activation_function=torch.nn.Identity()),
        models.Normalize(),
    ]
    out = folder / "checkpoint"
    SentenceTransformer(modules=modules, prompts=PROMPTS, device="cpu").save(str(out))
    # The real checkpoint ships the SentencePiece model beside tokenizer.json.
    (out / "tokenizer.model").write_bytes(spm_file.read_bytes())
    config_st = json.loads((out / "config_sentence_transformers.json").read_text())
    assert config_st["prompts"] == PROMPTS
    return out
