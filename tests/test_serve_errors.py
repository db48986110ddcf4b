"""Every refusal of the server: its status, its shape in each dialect, and its message.

OpenAI routes answer ``{"error": {"message", "type", "param", "code"}}``; TEI routes
``{"error", "error_type"}``.  Each message names the field (and index) at fault.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from embgemma_plugins import EmbeddingGemma
from embgemma_plugins.model import MAX_LENGTH
from tests.serve_process import post, serve

pytest.importorskip("starlette")

LONG = "token " * (MAX_LENGTH + 50)


@pytest.fixture(scope="module")
def server(tiny_model: Path):
    with serve(tiny_model, "--threads", "1", "--max-body-bytes", "65536",
               "--max-request-texts", "4", "--max-queue-texts", "16") as s:
        yield s


@pytest.fixture(scope="module")
def gemma(tiny_model: Path) -> EmbeddingGemma:
    return EmbeddingGemma(tiny_model, threads=1)


def openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


def tei_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_type"}
    return dict(body)


def test_body_over_the_limit_is_413(server):
    big = {"input": ["x" * 70_000]}
    err = openai_error(post(server, "/v1/embeddings", big), 413)
    assert "over the server's limit of 65536" in err["message"] and "--max-body-bytes" in err[
        "message"]
    assert tei_error(post(server, "/embed", {"inputs": "x" * 70_000}), 413)[
        "error_type"] == "validation"
    # a chunked body (no Content-Length) is cut off as it is read
    chunks = (b'{"input": "' + b"y" * 10_000 for _ in range(8))
    chunked = httpx.post(server.url + "/v1/embeddings", content=chunks, timeout=30)
    assert "over the server's limit" in openai_error(chunked, 413)["message"]


def test_too_many_texts_is_413(server):
    err = openai_error(post(server, "/v1/embeddings", {"input": ["a"] * 5}), 413)
    assert err["message"].startswith("5 inputs in one request, over the server's limit of 4")
    assert err["code"] == "too_many_inputs"
    assert "limit of 4" in tei_error(post(server, "/embed", {"inputs": ["a"] * 5}), 413)["error"]


def test_too_long_input_is_413_naming_index_and_tokens(server, gemma):
    tokens = int(gemma.tokenize([LONG], gemma.prompt_for(task="document")).lengths[0])
    err = openai_error(post(server, "/v1/embeddings", {"input": ["fine", LONG]}), 413)
    assert err["param"] == "input[1]" and err["code"] == "context_length_exceeded"
    assert err["message"].startswith(f"input[1] is {tokens} tokens")
    assert f"over the model's {MAX_LENGTH}" in err["message"]
    err = tei_error(post(server, "/embed", {"inputs": [LONG, LONG], "truncate": False}), 413)
    assert err["error"].startswith(f"inputs[0] is {tokens} tokens")
    assert "(1 more inputs are too long)" in err["error"]


def test_openai_route_truncates_with_the_server_flag(tiny_model, gemma):
    with serve(tiny_model, "--threads", "1", "--truncate") as s:
        got = post(s, "/v1/embeddings", {"input": [LONG], "encoding_format": "float"})
        assert got.status_code == 200
        np.testing.assert_array_equal(np.array([got.json()["data"][0]["embedding"]], np.float32),
                                      gemma.embed_documents([LONG]))
        assert got.json()["usage"]["prompt_tokens"] == MAX_LENGTH


@pytest.mark.parametrize(("body", "param", "message"), [
    ({"input": ["a", "b", 3]}, "input[2]", "'input[2]' is a number, not a string"),
    ({"input": ["a", None]}, "input[1]", "'input[1]' is null, not a string"),
    ({"input": []}, "input", "'input' is an empty list"),
    ({"model": "m"}, "input", "'input' is required"),
    ({"input": {"text": "a"}}, "input", "'input' must be a string or a list of strings"),
    ({"input": "a", "dimensions": 100}, "dimensions",
     "'dimensions' must be one of 768, 512, 256, 128"),
    ({"input": "a", "dimensions": "256"}, "dimensions", "'dimensions' must be an integer"),
    ({"input": "a", "encoding_format": "int8"}, "encoding_format",
     "'encoding_format' must be float or base64"),
    ({"input": "a", "task": "poetry"}, "task", "'task': unknown task 'poetry'; valid tasks:"),
    ({"input": "a", "input_type": "question"}, "input_type", "'input_type' must be one of"),
    ({"input": "a", "model": "fp32:querry"}, "model", "model 'fp32:querry': unknown task"),
    ({"input": "a", "task": "STS", "input_type": "query"}, "input_type",
     "conflicting tasks: 'task' names 'STS' but 'input_type' names 'query'"),
    ({"input": ["a"], "titles": ["t"], "input_type": "query"}, "titles",
     "'titles' are for the document task"),
    ({"input": ["a", "b"], "titles": ["t"]}, "titles", "'titles' must be a list with one"),
    ([1, 2], None, "the request body must be a JSON object, not an array"),
])
def test_bad_openai_requests_are_400_naming_the_field(server, body, param, message):
    err = openai_error(post(server, "/v1/embeddings", body), 400)
    assert err["message"].startswith(message), err["message"]
    assert err["param"] == param
    assert err["type"] == "invalid_request_error"


@pytest.mark.parametrize(("body", "message"), [
    ({"inputs": "a", "normalize": False}, "'normalize': false is not supported"),
    ({"inputs": "a", "truncation_direction": "left"}, "'truncation_direction' 'left'"),
    ({"inputs": "a", "prompt_name": "poetry"}, "'prompt_name': unknown task 'poetry'"),
    ({"inputs": ["a", 1]}, "'inputs[1]' is a number"),
    ({"inputs": "a", "truncate": "yes"}, "'truncate' must be true or false"),
])
def test_bad_tei_requests_are_400(server, body, message):
    err = tei_error(post(server, "/embed", body), 400)
    assert err["error"].startswith(message) and err["error_type"] == "validation"
    empty = tei_error(post(server, "/embed", {"inputs": []}), 400)
    assert empty["error_type"] == "empty"


def test_malformed_json_is_400(server):
    got = httpx.post(server.url + "/v1/embeddings", content=b'{"input": "a",', timeout=30)
    assert openai_error(got, 400)["message"].startswith("the request body is not valid JSON")
    got = httpx.post(server.url + "/embed", content=b"\xff\xfe", timeout=30)
    assert tei_error(got, 400)["error"].startswith("the request body is not valid JSON")


def test_the_openai_client_raises_its_own_error_classes(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.BadRequestError) as bad:
        client.embeddings.create(model="m", input="a", dimensions=300)
    assert bad.value.param == "dimensions" and "768, 512, 256, 128" in bad.value.message
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_api_key(tiny_model):
    openai = pytest.importorskip("openai")
    with serve(tiny_model, "--threads", "1", "--api-key", "s3cret") as s:
        missing = openai_error(post(s, "/v1/embeddings", {"input": "a"}), 401)
        assert missing["message"].startswith("no API key was given")
        assert missing["code"] == "invalid_api_key"
        wrong = post(s, "/embed", {"inputs": "a"}, headers={"Authorization": "Bearer nope"})
        assert tei_error(wrong, 401)["error"].startswith("the API key is not valid")
        assert httpx.get(s.url + "/metrics", timeout=30).status_code == 401
        assert httpx.get(s.url + "/health", timeout=30).status_code == 200  # probes need no key
        good = post(s, "/embed", {"inputs": "a"}, headers={"Authorization": "Bearer s3cret"})
        assert good.status_code == 200
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=s.url + "/v1", api_key="nope", max_retries=0
                          ).embeddings.create(model="m", input="a")
        ok = openai.OpenAI(base_url=s.url + "/v1", api_key="s3cret", max_retries=0
                           ).embeddings.create(model="m", input="a")
        assert len(ok.data) == 1


def test_full_queue_is_429_with_retry_after_not_a_hang(tiny_model):
    # texts wait up to 3 s for a batch of 100,000 tokens to fill: the queue stays full
    with serve(tiny_model, "--threads", "1", "--max-queue-texts", "4", "--max-request-texts",
               "4", "--max-wait-ms", "3000", "--max-batch-tokens", "100000") as s:
        first: list[httpx.Response] = []
        waiting = threading.Thread(
            target=lambda: first.append(post(s, "/v1/embeddings", {"input": list("abcd")})))
        waiting.start()
        deadline = time.monotonic() + 10
        while "embgemma_queue_texts 4.0" not in httpx.get(s.url + "/metrics").text:
            assert time.monotonic() < deadline, "the first request never reached the queue"
            time.sleep(0.02)
        start = time.monotonic()
        full = post(s, "/v1/embeddings", {"input": "one more"})
        assert time.monotonic() - start < 1.0  # refused at once
        err = openai_error(full, 429)
        assert err["code"] == "queue_full" and "--max-queue-texts 4" in err["message"]
        assert int(full.headers["Retry-After"]) >= 1
        tei = post(s, "/embed", {"inputs": "one more"})
        assert tei_error(tei, 429)["error_type"] == "overloaded"
        assert "Retry-After" in tei.headers
        waiting.join(30)
        assert first and first[0].status_code == 200 and len(first[0].json()["data"]) == 4


def nan_model(src: Path, dst: Path) -> Path:
    """A copy of the tiny model whose last Dense weight holds a NaN: every vector is NaN."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(src / "model.onnx"))
    last = [n for n in graph.graph.node if n.op_type == "MatMul"][-1]
    init = next(i for i in graph.graph.initializer if i.name == last.input[1])
    weights = numpy_helper.to_array(init).copy()
    weights.flat[0] = np.nan
    init.CopyFrom(numpy_helper.from_array(weights, init.name))
    dst.mkdir()
    onnx.save(graph, str(dst / "model.onnx"), save_as_external_data=True,
              location="model.onnx.data")
    for name in ("tokenizer.model", "config_sentence_transformers.json"):
        shutil.copy(src / name, dst / name)
    return dst


def test_nan_never_leaves_the_server(tiny_model, tmp_path):
    with serve(nan_model(tiny_model, tmp_path / "nan"), "--threads", "1") as s:
        got = post(s, "/v1/embeddings", {"input": ["a", "b"], "encoding_format": "float"})
        err = openai_error(got, 500)
        assert err["type"] == "server_error" and err["code"] == "model_error"
        assert "produced NaN/Inf" in err["message"]
        tei = post(s, "/embed", {"inputs": "a"})
        assert tei_error(tei, 424)["error_type"] == "backend"
        assert "NaN" not in got.text.replace("NaN/Inf", "")
