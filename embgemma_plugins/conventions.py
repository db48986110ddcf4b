"""The names users bring from other libraries, and what they are called here.

People arrive from LangChain's ``HuggingFaceEmbeddings``, LlamaIndex's
``HuggingFaceEmbedding`` and sentence-transformers with their keyword arguments in
their fingers (``model_name=``, ``model_kwargs={"device": "cuda"}``,
``encode_kwargs={"batch_size": 32}``, ``truncate_dim=``, ...).  The framework classes
keep ``extra="forbid"`` (a misspelt setting must not be ignored), and this module
turns each refusal into a sentence naming the field meant: :func:`hint` for one name,
:func:`with_hints` for a whole pydantic ``ValidationError``.

It also reads the framework names users write (:func:`framework_name`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from embgemma_plugins.errors import InvalidArgumentError

_UNIT = "drop it: vectors are always unit length (cosine = dot product)"
_ONNX = "drop it: the model always runs on ONNX Runtime"
_SIDES = "query_prompt= for queries, document_prompt= for documents (or query_task=)"
_CALL = ("pass show_progress=True to the call (VectorStoreIndex(..., show_progress=True), "
         "get_text_embedding_batch)")
_STORE = "drop it: models live in the model store (set EMBGEMMA_HOME to move it)"

#: Another library's name -> the fields it means here, in order of preference (the first
#: the class has is named), or a sentence starting with "!" when there is no such field.
NAMES: Mapping[str, tuple[str, ...]] = {
    # the model
    "model_name": ("model",), "model_id": ("model",), "model_name_or_path": ("model",),
    "repo_id": ("model",), "model_path": ("model",),
    "cache_folder": (f"!{_STORE}",), "cache_dir": (f"!{_STORE}",),
    "backend": (f"!{_ONNX}",), "file_name": ("variant",), "quantization": ("variant",),
    "trust_remote_code": ("!drop it: no remote code runs",),
    "revision": ("!pin a revision by passing a local folder (or a built variant) as model",),
    "token": ("!set HF_TOKEN (or run `hf auth login`) for the gated checkpoint",),
    # hardware
    "device": ("providers",), "provider": ("providers",), "target_devices": ("providers",),
    "num_threads": ("threads",), "n_threads": ("threads",),
    "intra_op_num_threads": ("threads",),
    "multi_process": ("!drop it: one session uses every core (threads=)",),
    "parallel_process": ("!drop it: one session uses every core (threads=)",),
    # vectors
    "dimension": ("dimensions",), "dims": ("dimensions",), "dim": ("dimensions",),
    "truncate_dim": ("dimensions",), "output_dimensionality": ("dimensions",),
    "embed_dim": ("dimensions",), "embedding_dim": ("dimensions",),
    "normalize": (f"!{_UNIT}",), "normalize_embeddings": (f"!{_UNIT}",),
    "convert_to_numpy": ("!drop it: vectors are returned as lists of floats",),
    "convert_to_tensor": ("!drop it: vectors are returned as lists of floats",),
    "precision": ("!quantised vectors are `embgemma embed --precision`; variant= picks "
                  "the model's fp32/int8/int4 weights",),
    # prompts
    "query_instruction": ("query_prompt",), "text_instruction": ("document_prompt",),
    "embed_instruction": ("document_prompt",), "document_instruction": ("document_prompt",),
    "prompt": (f"!{_SIDES}",), "prompts": (f"!{_SIDES}",),
    "prompt_name": ("query_task",), "default_prompt_name": ("query_task",),
    "task": ("query_task",), "task_type": ("query_task",), "title": ("title_key",),
    # batches and progress
    "batch_size": ("batch_size", "embed_batch_size"),
    "embed_batch_size": ("embed_batch_size", "batch_size"),
    "show_progress": ("show_progress", f"!{_CALL}"),
    "show_progress_bar": ("show_progress", f"!{_CALL}"),
    "max_seq_length": ("max_length",), "max_tokens": ("max_length",),
    "tokenizer_name": ("!drop it: the tokenizer comes with the model",),
}
#: Keyword-argument dictionaries of other libraries: their keys are fields here.
BAGS = ("model_kwargs", "encode_kwargs", "query_encode_kwargs", "config_kwargs")


def _target(name: str, fields: Collection[str]) -> str | None:
    """The field ``name`` means here (``"field"``), a sentence (``"!..."``), or None."""
    for candidate in NAMES.get(name, ()):
        if candidate.startswith("!") or candidate in fields:
            return candidate
    close = difflib.get_close_matches(name, list(fields), n=1, cutoff=0.8)
    return close[0] if close else None


def hint(name: str, value: Any, fields: Collection[str]) -> str | None:
    """What to write instead of ``name=value`` for a class with ``fields`` (None: no idea)."""
    if name in BAGS and isinstance(value, Mapping):
        parts = []
        for key, item in value.items():
            target = _target(str(key), fields)
            if target is None:
                parts.append(f"{key!r} has no counterpart here")
            elif target.startswith("!"):
                parts.append(f"{key!r}: {target[1:]}")
            else:
                parts.append(f"write {target}={item!r} for {key!r}")
        return f"set its keys as fields: {'; '.join(parts)}" if parts else "drop it"
    target = _target(name, fields)
    if target is None:
        return None
    return target[1:] if target.startswith("!") else f"did you mean {target}=?"


def with_hints(error: ValidationError, fields: Collection[str], data: Mapping[str, Any]) -> \
        ValidationError:
    """``error`` with a hint added to each refused unknown field that has one."""
    details: list[Any] = []
    changed = False
    for e in error.errors(include_url=False):
        loc = e["loc"]
        said = hint(str(loc[0]), data.get(str(loc[0])), fields) if (
            e["type"] == "extra_forbidden" and len(loc) == 1) else None
        if said is None:
            details.append({k: e[k] for k in ("type", "loc", "input", "ctx") if k in e})
            continue
        changed = True
        message = PydanticCustomError("extra_forbidden", "Extra inputs are not permitted: {hint}",
                                      {"hint": said})
        details.append({"type": message, "loc": loc, "input": e["input"]})
    return ValidationError.from_exception_data(error.title, details) if changed else error


def says_value(message: str, value: Any) -> bool:
    """Whether ``message`` already shows ``value`` (so it is not printed twice)."""
    shown = re.escape(repr(value))
    return re.search(rf"(?<![\w.-]){shown}(?![\w.])", message) is not None


#: The framework names users write, normalised (lower case, no spaces, dashes, dots or
#: underscores), and the framework each means.
_FRAMEWORKS = {"langchain": "langchain", "langchaincore": "langchain",
               "llamaindex": "llamaindex", "llamaindexcore": "llamaindex",
               "gptindex": "llamaindex"}


def framework_name(spelling: str) -> str:
    """``"langchain"`` or ``"llamaindex"`` for any spelling users write of either
    (``LangChain``, ``lang-chain``, ``llama_index``, ``llama-index``, ``LlamaIndex``)."""
    key = re.sub(r"[\s._-]+", "", spelling.lower()) if isinstance(spelling, str) else ""
    if key in _FRAMEWORKS:
        return _FRAMEWORKS[key]
    raise InvalidArgumentError(
        f"framework must be 'langchain' or 'llamaindex' (any case; 'llama_index' and "
        f"'llama-index' work too), got {spelling!r}"
    )
