"""The checkpoint's prompts reach the tokenizer exactly."""

from __future__ import annotations

import numpy as np
import pytest

from embgemma_plugins.errors import InvalidArgumentError
from embgemma_plugins.prompts import PromptTable
from tests.tiny_model import PROMPTS


def test_prompt_table_is_read_from_the_checkpoint(tiny_gemma):
    assert dict(tiny_gemma.prompts.prompts) == PROMPTS


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("query", "task: search result | query: "),
        ("QUERY", "task: search result | query: "),
        ("document", "title: none | text: "),
        ("sts", "task: sentence similarity | query: "),
        ("retrieval-query", "task: search result | query: "),
        ("Retrieval_Document", "title: none | text: "),
        ("instructionretrieval", "task: code retrieval | query: "),
        ("question answering", "task: question answering | query: "),
        ("Fact-Checking", "task: fact checking | query: "),
    ],
)
def test_task_names_resolve_case_insensitively(tiny_gemma, task, expected):
    assert tiny_gemma.prompt_for(task=task) == expected


def test_exact_prompt_strings_reach_the_tokenizer(tiny_gemma):
    sp = tiny_gemma.tokenizer._sp
    text = "Which planet is known as the Red Planet?"
    for task, prompt in [*PROMPTS.items(), ("fact checking", "task: fact checking | query: ")]:
        ids = tiny_gemma.tokenize([text], tiny_gemma.prompt_for(task=task)).ids[0]
        assert ids.tolist() == [2, *sp.encode(prompt + text), 1], task


def test_embed_uses_the_task_prompt(tiny_gemma):
    texts = ["hello world", "another text"]
    by_task = tiny_gemma.embed(texts, task="STS")
    by_prompt = tiny_gemma.embed(texts, prompt="task: sentence similarity | query: ")
    np.testing.assert_array_equal(by_task, by_prompt)
    np.testing.assert_array_equal(
        tiny_gemma.embed_queries(texts), tiny_gemma.embed(texts, task="query")
    )


def test_no_task_means_no_prompt_like_sentence_transformers(tiny_gemma, tiny_st):
    from tests.conftest import cosines

    ours = tiny_gemma.embed(["plain text"])
    assert cosines(ours, tiny_st.encode(["plain text"]))[0] >= 0.99999


def test_titles_fill_the_document_prompt(tiny_gemma):
    texts = ["Mars is red.", "Venus is hot.", "Saturn has rings."]
    titles = ["Mars", None, "  "]
    got = tiny_gemma.embed_documents(texts, titles=titles)
    expected = np.vstack(
        [
            tiny_gemma.embed(texts[:1], prompt="title: Mars | text: "),
            tiny_gemma.embed(texts[1:2], prompt="title: none | text: "),
            tiny_gemma.embed(texts[2:], prompt="title: none | text: "),
        ]
    )
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert tiny_gemma.prompts.document_prompt("A | B") == "title: A | B | text: "


def test_unknown_task_lists_the_valid_names(tiny_gemma):
    with pytest.raises(InvalidArgumentError) as e:
        tiny_gemma.embed(["x"], task="translation")
    message = str(e.value)
    assert "'translation'" in message
    for name in [*PROMPTS, "question answering", "fact checking"]:
        assert name in message


def test_task_and_prompt_together_is_an_error(tiny_gemma):
    with pytest.raises(InvalidArgumentError, match="either task= or prompt="):
        tiny_gemma.embed(["x"], task="query", prompt="q: ")


def test_titles_must_match_texts(tiny_gemma):
    with pytest.raises(InvalidArgumentError, match="one title"):
        tiny_gemma.embed_documents(["a", "b"], titles=["only one"])
    with pytest.raises(InvalidArgumentError, match=r"titles\[1\]"):
        tiny_gemma.embed_documents(["a", "b"], titles=["t", 3])


def test_prompt_table_rejects_a_config_without_prompts():
    from embgemma_plugins.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="prompts"):
        PromptTable.from_config({"prompts": None})
