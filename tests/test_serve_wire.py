"""Request parsing and error shapes, without a server (pure functions)."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette")

from embgemma_plugins.serve.errors import OPENAI, TEI, ApiError, backend_error
from embgemma_plugins.serve.wire import (
    EmbedCall,
    TaskChoice,
    model_task,
    openai_call,
    tei_call,
    tokenize_call,
)

NAMES = ["google/embeddinggemma-300m", "embeddinggemma-300m"]
TASKS = ["query", "document", "STS", "Retrieval-query", "fact checking"]


def refused(call, *args) -> ApiError:  # type: ignore[no-untyped-def]
    with pytest.raises(ApiError) as e:
        call(*args)
    return e.value


def test_openai_call_reads_every_field():
    call = openai_call({"input": "one", "model": "embeddinggemma-300m:query", "dimensions": 256,
                        "encoding_format": "base64", "user": "ignored"}, NAMES, TASKS)
    assert call == EmbedCall(["one"], (TaskChoice("query", "model"),), None, 256, None,
                             "base64", "embeddinggemma-300m:query")
    both = openai_call({"input": ["a", "b"], "task": "STS", "input_type": "document",
                        "titles": ["t", None]}, NAMES, TASKS)
    assert both.tasks == (TaskChoice("STS", "task"), TaskChoice("document", "input_type"))
    assert both.titles == ["t", None] and both.encoding == "float"


@pytest.mark.parametrize(("value", "task"), [
    ("query", "query"), ("search_query", "query"), ("Search_Document", "document"),
    ("passage", "document"), ("clustering", "Clustering"), ("classification", "Classification"),
])
def test_input_type_of_voyage_cohere_nvidia_clients(value, task):
    assert openai_call({"input": "a", "input_type": value}, NAMES, TASKS).tasks == (
        TaskChoice(task, "input_type"),)


def test_model_aliases():
    assert model_task("embeddinggemma-300m:query", NAMES, TASKS) == TaskChoice("query", "model")
    assert model_task("any-name:retrieval query", NAMES, TASKS) == TaskChoice(
        "retrieval query", "model")
    assert model_task("embeddinggemma-300m:none", NAMES, TASKS) == TaskChoice("none", "model")
    assert model_task("embeddinggemma-300m", NAMES, TASKS) is None
    assert model_task("nomic-embed-text:latest", NAMES, TASKS) is None  # not ours: ignored
    err = refused(model_task, "google/embeddinggemma-300m:qeury", NAMES, TASKS)
    assert err.status == 400 and err.param == "model" and "unknown task 'qeury'" in err.message
    assert "google/embeddinggemma-300m:query" in err.message


def test_booleans_are_not_integers():
    err = refused(openai_call, {"input": "a", "dimensions": True}, NAMES, TASKS)
    assert err.message == "'dimensions' must be an integer, not a boolean"


def test_tei_call_and_tokenize_call():
    call = tei_call({"inputs": ["a"], "truncate": True, "normalize": True,
                     "truncation_direction": "Right", "prompt_name": "query", "dimensions": 128},
                    {"prompt_name": "query"})
    assert call.tasks == (TaskChoice("query", "prompt_name"), TaskChoice("query", "?prompt_name"))
    assert (call.truncate, call.dimensions, call.field) == (True, 128, "inputs")
    assert tokenize_call({"inputs": "a", "add_special_tokens": False}) == (["a"], None, False)
    assert tokenize_call({"inputs": ["a"], "prompt_name": "STS"})[1:] == (
        TaskChoice("STS", "prompt_name"), True)


def test_error_bodies_in_both_dialects():
    err = ApiError(413, "too big", "input[3]", "context_length_exceeded")
    assert err.body(OPENAI) == {"error": {"message": "too big", "type": "invalid_request_error",
                                          "param": "input[3]",
                                          "code": "context_length_exceeded"}}
    assert err.body(TEI) == {"error": "too big", "error_type": "validation"}
    nan = backend_error("NaN")
    assert (nan.status_for(OPENAI), nan.status_for(TEI)) == (500, 424)
    assert nan.body(OPENAI)["error"]["type"] == "server_error"
    assert nan.body(TEI)["error_type"] == "backend"
    busy = ApiError(429, "full", code="queue_full", retry_after=3)
    assert busy.headers() == {"Retry-After": "3"}
    assert busy.body(TEI)["error_type"] == "overloaded"
    assert busy.body(OPENAI)["error"]["type"] == "rate_limit_error"
    assert ApiError(503, "loading").body(TEI) == {"error": "loading", "error_type": "unhealthy"}


def test_cli_defaults_are_the_settings_defaults():
    """cli/serve_cmd.py states its defaults without importing the serve extra."""
    from embgemma_plugins.cli.serve_cmd import serve
    from embgemma_plugins.serve.settings import ServeSettings

    defaults = ServeSettings()
    options = {p.name: p.default for p in serve.params}
    for name in ("host", "port", "max_batch_tokens", "max_wait_ms", "max_queue_texts",
                 "max_request_texts", "max_body_bytes", "truncate", "model"):
        assert options[name] == getattr(defaults, name), name
    assert int(options["dimensions"]) == defaults.dimensions
