"""Request bodies of both dialects, checked and reduced to one :class:`EmbedCall`.

Every check names the field (and the item's index) it refuses.  Task names are kept
as given, with the field they came from, and checked against the model's prompt
table later (:mod:`embgemma_plugins.serve.service`), which knows the valid names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from embgemma_plugins.maths import DIMENSIONS
from embgemma_plugins.prompts import normalise_task
from embgemma_plugins.serve.errors import bad_request

#: ``input_type`` values of the Voyage, Cohere and NVIDIA clients -> the model's task names.
INPUT_TYPES = {
    "query": "query",
    "search_query": "query",
    "document": "document",
    "search_document": "document",
    "passage": "document",
    "classification": "Classification",
    "clustering": "Clustering",
}
ENCODINGS = ("float", "base64")
#: The task name that adds no prompt: for clients that put the model's prompt in the text.
NO_PROMPT = "none"


@dataclass(frozen=True)
class TaskChoice:
    """A task name and the field that chose it (``task``, ``input_type``, ``model``...)."""

    name: str
    field: str


@dataclass(frozen=True)
class EmbedCall:
    """One embedding request, either dialect: what to embed and how to answer."""

    texts: list[str]
    tasks: tuple[TaskChoice, ...] = ()  # every field that named a task; all must agree
    titles: list[str | None] | None = None
    dimensions: int | None = None  # None: the server's --dimensions
    truncate: bool | None = None  # None: the server's --truncate
    encoding: str = "float"
    model: str | None = None
    field: str = "input"  # the field holding the texts, for error messages


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object, not {_kind(body)}")
    return body


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null", int: "a number", float: "a number"}.get(type(value), "a value")


def texts_field(body: dict[str, Any], field: str) -> list[str]:
    """A string or a non-empty list of strings; errors name ``field[i]``."""
    if field not in body:
        raise bad_request(f"'{field}' is required: a string or a list of strings", field)
    value = body[field]
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise bad_request(
            f"'{field}' must be a string or a list of strings, not {_kind(value)}", field
        )
    if not value:
        raise bad_request(f"'{field}' is an empty list: give at least one text", field,
                          "empty_input")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            hint = (" (token ids are not accepted: send text; LangChain's OpenAIEmbeddings "
                    "needs check_embedding_ctx_length=False)"
                    if isinstance(item, (int, list)) else "")
            raise bad_request(f"'{field}[{i}]' is {_kind(item)}, not a string{hint}",
                              f"{field}[{i}]")
    return value


def _optional(body: dict[str, Any], field: str, kinds: type | tuple[type, ...],
              what: str) -> Any:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in _tuple(kinds)):
        raise bad_request(f"'{field}' must be {what}, not {_kind(value)}", field)
    return value


def _tuple(kinds: type | tuple[type, ...]) -> tuple[type, ...]:
    return kinds if isinstance(kinds, tuple) else (kinds,)


def dimensions_field(body: dict[str, Any]) -> int | None:
    value = _optional(body, "dimensions", int, "an integer")
    if value is not None and value not in DIMENSIONS:
        raise bad_request(
            f"'dimensions' must be one of {', '.join(map(str, DIMENSIONS))} "
            f"(EmbeddingGemma's Matryoshka sizes), got {value}", "dimensions",
        )
    return value  # type: ignore[no-any-return]


def titles_field(body: dict[str, Any], n: int) -> list[str | None] | None:
    titles = body.get("titles")
    if titles is None:
        return None
    if not isinstance(titles, list) or len(titles) != n:
        raise bad_request(
            f"'titles' must be a list with one title (a string or null) per input ({n})",
            "titles",
        )
    for i, t in enumerate(titles):
        if t is not None and not isinstance(t, str):
            raise bad_request(f"'titles[{i}]' is {_kind(t)}, not a string or null",
                              f"titles[{i}]")
    return titles


def input_type_task(body: dict[str, Any]) -> TaskChoice | None:
    value = _optional(body, "input_type", str, "a string")
    if value is None:
        return None
    task = INPUT_TYPES.get(value.strip().lower())
    if task is None:
        raise bad_request(
            f"'input_type' must be one of {', '.join(INPUT_TYPES)}, got {value!r} "
            "(or give any task of the model in 'task')", "input_type",
        )
    return TaskChoice(task, "input_type")


def model_task(model: str | None, names: Iterable[str], tasks: Iterable[str]) -> TaskChoice | None:
    """The task of a model alias ``NAME:TASK``, for clients that can set only the model.

    A suffix that is a task of the model counts whatever the name before it; one that is
    not is an error when the name is this model's (a typo must not fall back to the
    document prompt), and is ignored on any other name (``text-embedding-3-small``,
    ``some-model:latest``): the server serves one model, as TEI does.
    """
    if not model or ":" not in model:
        return None
    base, suffix = model.rsplit(":", 1)
    known = {normalise_task(t) for t in (*tasks, NO_PROMPT)}
    if normalise_task(suffix) in known:
        return TaskChoice(suffix, "model")
    if base in set(names):
        raise bad_request(
            f"model {model!r}: unknown task {suffix!r}; use one of "
            f"{', '.join(f'{base}:{t}' for t in sorted(known))}", "model", "model_not_found",
        )
    return None


def openai_call(body: Any, names: Iterable[str], tasks: Iterable[str]) -> EmbedCall:
    """``POST /v1/embeddings``: OpenAI's fields plus ``input_type``, ``task``, ``titles``."""
    body = _object(body)
    texts = texts_field(body, "input")
    model = _optional(body, "model", str, "a string")
    encoding = _optional(body, "encoding_format", str, "a string") or "float"
    if encoding not in ENCODINGS:
        raise bad_request(f"'encoding_format' must be float or base64, got {encoding!r}",
                          "encoding_format")
    choices = [c for c in (
        _task_field(body, "task"), input_type_task(body), model_task(model, names, tasks),
    ) if c is not None]
    return EmbedCall(texts, tuple(choices), titles_field(body, len(texts)),
                     dimensions_field(body), None, encoding, model)


def tei_call(body: Any, query: Mapping[str, str] | None = None) -> EmbedCall:
    """``POST /embed``: TEI's ``inputs``, ``truncate``, ``normalize``, ``prompt_name``,
    ``dimensions`` (plus this server's ``titles``).  ``?prompt_name=`` in the URL is for
    clients that can set only a URL (LlamaIndex's ``endpoint``)."""
    body = _object(body)
    texts = texts_field(body, "inputs")
    truncate = _optional(body, "truncate", bool, "true or false")
    if _optional(body, "normalize", bool, "true or false") is False:
        raise bad_request(
            "'normalize': false is not supported: EmbeddingGemma's last module L2-normalises, "
            "so its vectors are always unit length", "normalize",
        )
    direction = _optional(body, "truncation_direction", str, "a string")
    if direction is not None and direction.lower() != "right":
        raise bad_request(
            f"'truncation_direction' {direction!r} is not supported: inputs are cut at the "
            "end (right), keeping EOS last, as the model was trained", "truncation_direction",
        )
    in_url = (query or {}).get("prompt_name")
    choices = [c for c in (_task_field(body, "prompt_name"), _task_field(body, "task"),
                           TaskChoice(in_url, "?prompt_name") if in_url else None)
               if c is not None]
    return EmbedCall(texts, tuple(choices), titles_field(body, len(texts)),
                     dimensions_field(body), truncate, field="inputs")


def tokenize_call(body: Any) -> tuple[list[str], TaskChoice | None, bool]:
    """``POST /tokenize``: texts, the prompt name, and ``add_special_tokens``."""
    body = _object(body)
    texts = texts_field(body, "inputs")
    special = _optional(body, "add_special_tokens", bool, "true or false")
    return texts, _task_field(body, "prompt_name"), special is not False


def _task_field(body: dict[str, Any], field: str) -> TaskChoice | None:
    value = _optional(body, field, str, "a string (a task name of the model)")
    return TaskChoice(value, field) if value is not None else None
