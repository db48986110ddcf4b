"""The model's task prompts, read from the checkpoint's own prompt table.

EmbeddingGemma was trained with a text prefix per task (``task: search result |
query: `` for queries, ``title: none | text: `` for documents, ...).  Forgetting the
prefix, or using the query prefix for documents, degrades retrieval silently, so the
prompt table is data read from ``config_sentence_transformers.json`` of the
checkpoint (or of the exported variant, which carries a copy), never a second copy
kept in code.  The only prompts written here are the two the model card adds that
the checkpoint's table lacks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from embgemma_plugins.errors import InvalidArgumentError, ModelNotFoundError

PROMPTS_FILE = "config_sentence_transformers.json"

#: Prompts documented on the model card but absent from the checkpoint's table.
MODEL_CARD_PROMPTS: Mapping[str, str] = {
    "question answering": "task: question answering | query: ",
    "fact checking": "task: fact checking | query: ",
}

QUERY_TASK = "query"
DOCUMENT_TASK = "document"
#: What a title replaces in the document prompt (``title: none | text: ``).
TITLE_SLOT = "title: none"


def normalise_task(name: str) -> str:
    """Case-, space-, dash- and underscore-insensitive key of a task name."""
    return re.sub(r"[\s_-]+", " ", name.strip().lower())


@dataclass(frozen=True)
class PromptTable:
    """Task name -> prompt string, as the checkpoint defines it."""

    prompts: Mapping[str, str]
    default_prompt_name: str | None = None
    _index: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {normalise_task(k): v for k, v in MODEL_CARD_PROMPTS.items()}
        index.update({normalise_task(k): v for k, v in self.prompts.items()})
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> PromptTable:
        prompts = config.get("prompts")
        if not isinstance(prompts, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in prompts.items()
        ):
            raise ModelNotFoundError(f"{PROMPTS_FILE} has no valid 'prompts' table")
        default = config.get("default_prompt_name")
        return cls(dict(prompts), default if isinstance(default, str) else None)

    @classmethod
    def from_file(cls, path: str | Path) -> PromptTable:
        with open(path, encoding="utf-8") as f:
            return cls.from_config(json.load(f))

    def names(self) -> list[str]:
        """Every task name accepted by :meth:`prompt` (checkpoint names first)."""
        extra = [
            n
            for n in MODEL_CARD_PROMPTS
            if normalise_task(n) not in {normalise_task(k) for k in self.prompts}
        ]
        return [*self.prompts, *extra]

    def prompt(self, task: str) -> str:
        """The prompt of ``task`` (case-insensitive); unknown names list the valid ones."""
        if not isinstance(task, str):
            raise InvalidArgumentError(f"task must be a string, not {type(task).__name__}")
        try:
            return self._index[normalise_task(task)]
        except KeyError:
            raise InvalidArgumentError(
                f"unknown task {task!r}; valid tasks: {', '.join(self.names())}"
            ) from None

    def default_prompt(self) -> str:
        """The prompt used when neither a task nor a prompt is given (as sentence-transformers)."""
        return self.prompt(self.default_prompt_name) if self.default_prompt_name else ""

    def document_prompt(self, title: str | None = None) -> str:
        """``title: {title} | text: `` built from the checkpoint's document prompt.

        The checkpoint's document prompt is ``title: none | text: ``; a known title
        replaces ``none`` verbatim (the model card reports that real titles improve
        quality); a missing or blank title keeps ``none``.
        """
        return put_title(self.prompt(DOCUMENT_TASK), title)


def put_title(prompt: str, title: str | None) -> str:
    """``prompt`` with ``title`` in its ``title: none`` (unchanged for no or a blank title)."""
    if title is None or not title.strip():
        return prompt
    if TITLE_SLOT not in prompt:
        raise InvalidArgumentError(
            f"the document prompt {prompt!r} has no '{TITLE_SLOT}' slot to put a title in"
        )
    return prompt.replace(TITLE_SLOT, f"title: {title}", 1)


def choose_prompt(
    table: Callable[[], PromptTable], task: str | None = None, prompt: str | None = None
) -> str:
    """The prompt for ``task`` from ``table()``, or the explicit ``prompt`` (not both);
    neither gives the table's default prompt. ``table`` is called only when needed, so
    an explicit prompt works for an export that has no prompt table."""
    if task is not None and prompt is not None:
        raise InvalidArgumentError("give either task= or prompt=, not both")
    if prompt is not None:
        if not isinstance(prompt, str):
            raise InvalidArgumentError(f"prompt must be a string, not {type(prompt).__name__}")
        return prompt
    prompts = table()
    return prompts.prompt(task) if task is not None else prompts.default_prompt()


def check_explicit_prompts(
    query_task: str, query_prompt: str | None, document_prompt: str | None,
    title_key: str | None,
) -> None:
    """Refuse explicit prompt strings that contradict the other settings: a query prompt
    beside a query task other than ``query``, a document prompt as the query prompt, a
    document prompt without a ``title: none`` for the titles of ``title_key``."""
    if query_prompt is not None and normalise_task(query_task) != QUERY_TASK:
        raise InvalidArgumentError(
            f"give query_task ({query_task!r}) or query_prompt ({query_prompt!r}), not both"
        )
    if query_prompt is not None and query_prompt.lstrip().startswith("title:"):
        raise InvalidArgumentError(f"query_prompt {query_prompt!r} is a document prompt")
    if title_key and document_prompt is not None and TITLE_SLOT not in document_prompt:
        raise InvalidArgumentError(
            f"document_prompt {document_prompt!r} has no {TITLE_SLOT!r} for the titles of "
            f"title_key={title_key!r} to replace"
        )
