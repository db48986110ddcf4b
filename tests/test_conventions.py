"""The names users bring from HuggingFaceEmbeddings, LlamaIndex and sentence-transformers:
refused (extra="forbid" stays) with the field they meant; framework spellings; config
errors that show each figure once; explicit prompt strings checked against the rest."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from embgemma_plugins import EmbeddingGemmaEmbedding, EmbeddingGemmaEmbeddings
from embgemma_plugins.config import load_embeddings
from embgemma_plugins.errors import InvalidArgumentError


def _refusal(cls, **kwargs) -> str:
    with pytest.raises(ValidationError) as caught:
        cls(**kwargs)
    return str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "said"),
    [
        ({"model_name": "google/embeddinggemma-300m"}, "did you mean model=?"),
        ({"model_kwargs": {"device": "cuda"}}, "write providers='cuda' for 'device'"),
        ({"model_kwargs": {"trust_remote_code": True}}, "'trust_remote_code': drop it"),
        ({"encode_kwargs": {"normalize_embeddings": True}}, "vectors are always unit length"),
        ({"encode_kwargs": {"batch_size": 32}}, "write batch_size=32 for 'batch_size'"),
        ({"encode_kwargs": {"prompt": "q: "}}, "query_prompt= for queries, document_prompt="),
        ({"query_encode_kwargs": {"prompt_name": "query"}},
         "write query_task='query' for 'prompt_name'"),
        ({"show_progress_bar": True}, "did you mean show_progress=?"),
        ({"truncate_dim": 256}, "did you mean dimensions=?"),
        ({"dimension": 256}, "did you mean dimensions=?"),
        ({"device": "cuda"}, "did you mean providers=?"),
        ({"cache_folder": "/models"}, "set EMBGEMMA_HOME"),
        ({"query_instruction": "q: "}, "did you mean query_prompt=?"),
        ({"embed_instruction": "d: "}, "did you mean document_prompt=?"),
        ({"embed_batch_size": 16}, "did you mean batch_size=?"),
    ],
)
def test_langchain_refuses_other_names_with_the_field_meant(kwargs, said):
    (name,) = kwargs
    text = _refusal(EmbeddingGemmaEmbeddings, **kwargs)
    assert re.search(rf"(?m)^{name}$", text), text  # pydantic's own layout: the field's line
    assert "Extra inputs are not permitted: " in text and said in text


@pytest.mark.parametrize(
    ("kwargs", "said"),
    [
        ({"batch_size": 16}, "did you mean embed_batch_size=?"),
        ({"show_progress": True}, "pass show_progress=True to the call"),
        ({"text_instruction": "d: "}, "did you mean document_prompt=?"),
        ({"normalize": True}, "vectors are always unit length"),
        ({"device": "cpu"}, "did you mean providers=?"),
    ],
)
def test_llamaindex_refuses_other_names_with_the_field_meant(kwargs, said):
    text = _refusal(EmbeddingGemmaEmbedding, **kwargs)
    assert "Extra inputs are not permitted: " in text and said in text


def test_every_error_is_kept_and_unknown_names_stay_plain():
    text = _refusal(EmbeddingGemmaEmbeddings, dimensions=300, wibble=1, model_name="x")
    assert text.startswith("3 validation errors for EmbeddingGemmaEmbeddings")
    assert "dimensions must be one of 768" in text
    assert re.search(r"(?m)^wibble\n  Extra inputs are not permitted \[", text)
    assert "did you mean model=?" in text


@pytest.mark.parametrize(
    ("section", "figure"),
    [
        ({"dimensions": 300}, "300"),
        ({"variant": "fp16"}, "'fp16'"),
        ({"query_task": "document"}, "'document'"),
        ({"threads": 0}, "0"),
        ({"max_length": 4096}, "4096"),
        ({"dimensions": "many"}, "'many'"),
    ],
)
def test_config_errors_print_each_figure_once(section, figure):
    with pytest.raises(InvalidArgumentError) as caught:
        EmbeddingGemmaEmbeddings.from_config(section)
    assert str(caught.value).count(figure) == 1, str(caught.value)


def test_config_unknown_keys_name_the_key_meant():
    with pytest.raises(InvalidArgumentError, match=r"embeddings\.model_name: unknown key "
                       r"\(did you mean model=\?\); valid keys: provider, model,"):
        EmbeddingGemmaEmbeddings.from_config({"model_name": "google/embeddinggemma-300m"})
    with pytest.raises(InvalidArgumentError, match=r"embeddings\.wibble: unknown key; valid"):
        EmbeddingGemmaEmbeddings.from_config({"wibble": 1})


@pytest.mark.parametrize(
    ("spelling", "cls"),
    [
        ("langchain", EmbeddingGemmaEmbeddings),
        ("LangChain", EmbeddingGemmaEmbeddings),
        ("lang-chain", EmbeddingGemmaEmbeddings),
        ("langchain_core", EmbeddingGemmaEmbeddings),
        ("llamaindex", EmbeddingGemmaEmbedding),
        ("llama_index", EmbeddingGemmaEmbedding),
        ("llama-index", EmbeddingGemmaEmbedding),
        ("LlamaIndex", EmbeddingGemmaEmbedding),
        ("Llama Index", EmbeddingGemmaEmbedding),
        ("llama_index.core", EmbeddingGemmaEmbedding),
    ],
)
def test_load_embeddings_takes_the_spellings_users_write(spelling, cls):
    assert type(load_embeddings({"dimensions": 256}, framework=spelling)) is cls


@pytest.mark.parametrize("spelling", ["haystack", "", "llama", "chain"])
def test_load_embeddings_refuses_other_frameworks(spelling):
    with pytest.raises(InvalidArgumentError, match="framework must be 'langchain' or "
                       f"'llamaindex'.*got {spelling!r}"):
        load_embeddings({}, framework=spelling)


@pytest.mark.parametrize("cls", [EmbeddingGemmaEmbeddings, EmbeddingGemmaEmbedding])
def test_explicit_prompts_are_checked_against_the_other_settings(cls):
    ok = cls(query_prompt="task: fact checking | query: ", document_prompt="title: none | text: ",
             title_key="title")
    assert ok.to_config()["query_prompt"] == "task: fact checking | query: "
    assert cls(query_task="Query", query_prompt="").query_prompt == ""  # the default task
    with pytest.raises(ValueError, match=r"give query_task \('STS'\) or query_prompt"):
        cls(query_task="STS", query_prompt="task: x | query: ")
    with pytest.raises(ValueError, match="is a document prompt"):
        cls(query_prompt="title: none | text: ")
    with pytest.raises(ValueError, match="has no 'title: none' for the titles of title_key"):
        cls(document_prompt="passage: ", title_key="title")
    obj = cls(query_prompt="task: x | query: ")
    with pytest.raises(ValueError, match="not both"):
        obj.query_task = "STS"  # assignment is checked too
    with pytest.raises(InvalidArgumentError, match="embeddings: give query_task"):
        cls.from_config({"query_task": "STS", "query_prompt": "x"})
