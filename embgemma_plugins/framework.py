"""What the LangChain and LlamaIndex classes are configured with: the ``embeddings`` section.

:class:`EmbeddingGemmaSettings` defines the section's keys once (the model settings of
:class:`~embgemma_plugins.settings.ModelSettings`, checked there, plus the query task and
the title key); both framework classes inherit it, so a section is validated the same way
whichever framework it builds.  A section comes from a mapping, a config file plus a key
path, or a provider string (:mod:`embgemma_plugins.configfile`).

The ONNX session is opened on first use, shared by every object with the same model
settings in the process (:func:`~embgemma_plugins.shared.shared_model`), and never pickled.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from typing_extensions import Self

from embgemma_plugins import configfile
from embgemma_plugins.configfile import PROVIDER
from embgemma_plugins.conventions import hint, says_value, with_hints
from embgemma_plugins.errors import InvalidArgumentError
from embgemma_plugins.long import check_policy
from embgemma_plugins.model import EmbeddingGemma
from embgemma_plugins.prompts import QUERY_TASK, check_explicit_prompts, normalise_task, put_title
from embgemma_plugins.settings import ModelSettings
from embgemma_plugins.shared import shared_model

_DOCUMENT_TASKS = {"document", "retrieval document"}
_DEFAULTS = ModelSettings()
#: The section keys that are model settings (the others are the adapters' own).
MODEL_KEYS = ("model", "variant", "dimensions", "providers", "threads", "max_length",
              "batch_tokens", "variants_repo", "revision")


class _Lazy:
    """The loaded model and the key it was opened for; pickles and copies empty."""

    def __init__(self) -> None:
        self.key: ModelSettings | None = None
        self.model: EmbeddingGemma | None = None
        self.lock = threading.Lock()

    def __reduce__(self) -> tuple[type[_Lazy], tuple[()]]:
        return (_Lazy, ())

    def __deepcopy__(self, memo: dict[int, Any]) -> _Lazy:
        return _Lazy()


class EmbeddingGemmaSettings(BaseModel):
    """The ``embeddings`` section: what both framework classes are configured with.

    Attributes:
        model: hub id or local folder of an export.
        variant: ``fp32``, ``int8`` or ``int4`` (``None``: the store's default).
        dimensions: 768, 512, 256 or 128 (Matryoshka).
        query_task: the prompt task of queries (``query``; e.g. ``question answering``,
            ``fact checking``, ``code retrieval``); documents always get the document prompt.
        query_prompt: an explicit query prompt string instead of ``query_task``'s
            (``"task: fact checking | query: "``; ``""``: none). Not with a ``query_task``.
        document_prompt: an explicit document prompt string instead of the checkpoint's
            (``title: none | text: ``); a title replaces its ``title: none``.
        title_key: metadata key holding a document's title (``title: {title} | text: ``).
        long: what happens to a document longer than ``max_length`` tokens: ``truncate``
            (cut, with a ``TruncationWarning`` naming it), ``error``, ``mean`` (token-weighted
            mean of its chunks' vectors) or ``late`` (late chunking's document vector).
        providers: ONNX Runtime providers (``cpu``, ``cuda``, a list, or ``None``: auto).
        threads: intra-op threads (``None``: one per physical core).
        max_length: tokens per text (longer texts are cut).
        batch_tokens: padded tokens per batch (bounds memory per session run).
        variants_repo: hub repository of prebuilt variants tried before a build
            (``None``: ``$EMBGEMMA_VARIANTS_REPO``; ``""``: none).
        revision: commit, branch or tag of that repository (or of ``model``, if it is one).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model: str = _DEFAULTS.model
    variant: str | None = _DEFAULTS.variant
    dimensions: int = _DEFAULTS.dimensions
    query_task: str = QUERY_TASK
    query_prompt: str | None = None
    document_prompt: str | None = None
    title_key: str | None = None
    long: str = "truncate"
    providers: str | list[str] | None = None
    threads: int | None = Field(default=_DEFAULTS.threads, ge=1)
    max_length: int = Field(default=_DEFAULTS.max_length, ge=3, le=_DEFAULTS.max_length)
    batch_tokens: int = Field(default=_DEFAULTS.batch_tokens, ge=1)
    variants_repo: str | None = _DEFAULTS.variants_repo
    revision: str | None = _DEFAULTS.revision

    _lazy: _Lazy = PrivateAttr(default_factory=_Lazy)

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:  # name the field meant by another library's name
            raise with_hints(e, type(self).model_fields, data) from None

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, v: Any) -> Any:
        return str(v) if isinstance(v, Path) else v

    @field_validator("model", "variant", "dimensions", "threads", "max_length", "batch_tokens",
                     "variants_repo", "revision")
    @classmethod
    def _model_setting(cls, v: Any, info: ValidationInfo) -> Any:
        try:
            return ModelSettings.check(str(info.field_name), v)
        except InvalidArgumentError as e:
            raise ValueError(str(e)) from None

    @field_validator("query_task")
    @classmethod
    def _query_task(cls, v: str) -> str:
        if normalise_task(v) in _DOCUMENT_TASKS:
            raise ValueError(f"{v!r} is the document prompt; queries need a query task")
        if not v.strip():
            raise ValueError("query_task must not be empty")
        return v

    @model_validator(mode="after")
    def _prompts(self) -> Self:
        check_explicit_prompts(self.query_task, self.query_prompt, self.document_prompt,
                               self.title_key)
        return self

    @field_validator("long")
    @classmethod
    def _long(cls, v: str) -> str:
        try:
            return check_policy(v)
        except InvalidArgumentError as e:
            raise ValueError(str(e)) from None

    @field_validator("providers", mode="before")
    @classmethod
    def _providers(cls, v: Any) -> Any:
        if isinstance(v, str) and "," in v:  # "cuda,cpu" from a provider string
            return [p.strip() for p in v.split(",") if p.strip()]
        return list(v) if isinstance(v, tuple) else v

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other) or not isinstance(other, BaseModel):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]

    def model_settings(self) -> ModelSettings:
        """The model this section describes."""
        return ModelSettings(**{k: getattr(self, k) for k in MODEL_KEYS})

    @property
    def client(self) -> EmbeddingGemma:
        """The core model (opened on first use; see :func:`shared_model`)."""
        key = self.model_settings()
        lazy = self._lazy
        with lazy.lock:
            if lazy.model is None or lazy.key != key:
                lazy.model, lazy.key = shared_model(key), key
            return lazy.model

    def _embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        prompt = self.query_prompt
        if prompt is None:
            try:
                prompt = self.client.prompt_for(task=self.query_task)
            except InvalidArgumentError as e:
                raise InvalidArgumentError(f"query_task: {e}") from None
        out: list[list[float]] = self.client.embed(texts, prompt=prompt).tolist()
        return out

    def _embed_documents(
        self, texts: Sequence[str], titles: Sequence[str | None] | None = None
    ) -> list[list[float]]:
        out: list[list[float]] = self.client.embed_documents(
            texts, titles=titles, prompt=self.document_prompt, long=self.long
        ).tolist()
        return out

    def _document_prompt(self, title: str | None = None) -> str:
        """The prompt a document with ``title`` gets."""
        if self.document_prompt is None:
            return self.client.prompts.document_prompt(title)
        return put_title(self.document_prompt, title)

    # -- config sections -------------------------------------------------------------

    @classmethod
    def from_config(cls, section: Mapping[str, Any], *, where: str = "embeddings") -> Self:
        """Build from a config section; unknown keys and bad values name the key."""
        if not isinstance(section, Mapping):
            raise InvalidArgumentError(f"{where}: expected a mapping, got {type(section).__name__}")
        values = dict(section)
        provider = values.pop("provider", PROVIDER)
        if provider != PROVIDER:
            raise InvalidArgumentError(f"{where}.provider: expected {PROVIDER!r}, got {provider!r}")
        keys = list(EmbeddingGemmaSettings.model_fields)
        for k in values:
            if k not in keys:
                said = hint(k, values[k], keys)
                raise InvalidArgumentError(
                    f"{where}.{k}: unknown key{f' ({said})' if said else ''}; "
                    f"valid keys: provider, {', '.join(keys)}"
                )
        try:
            return cls(**values)
        except ValidationError as e:
            err = e.errors()[0]
            key = ".".join(str(p) for p in err["loc"][:1])
            msg = err["msg"].removeprefix("Value error, ")
            got = "" if not key or says_value(msg, err["input"]) else f" (got {err['input']!r})"
            raise InvalidArgumentError(f"{where}{'.' if key else ''}{key}: {msg}{got}") from None

    def to_config(self) -> dict[str, Any]:
        """The section (``provider``, ``model`` and every non-default key)."""
        fields = EmbeddingGemmaSettings.model_fields
        values = {k: getattr(self, k) for k in fields}
        kept = {k: v for k, v in values.items() if k == "model" or v != fields[k].default}
        return {"provider": PROVIDER, **kept}

    @classmethod
    def from_config_file(cls, path: str | Path, key: str | Sequence[str] = "embeddings") -> Self:
        """Build from the section at ``key`` (``"rag.embeddings"``; ``""``: the whole
        file) of a YAML, TOML or JSON file."""
        data, where = configfile.section_at(Path(path), key)
        return cls.from_config(data, where=where)

    @classmethod
    def from_provider_string(cls, spec: str) -> Self:
        """Build from ``embgemma:<model>?key=value&...`` (an empty model: the default)."""
        return cls.from_config(configfile.parse_provider_string(spec), where=spec)

    def to_provider_string(self) -> str:
        """The inverse of :meth:`from_provider_string`."""
        return configfile.provider_string(self.to_config())
