"""The ``embeddings`` section of a RAG pipeline config, shared by both adapters.

:class:`EmbeddingGemmaSettings` defines the section's keys, defaults and checks
once; the LangChain and LlamaIndex classes inherit it, so a section is validated
the same way whichever framework it builds.  A section is a mapping (from YAML,
TOML or JSON), a file plus a key path, or a provider string::

    embgemma:google/embeddinggemma-300m?variant=int8&dimensions=256

The ONNX session is opened on first use, shared by every object with the same
model settings in the process (weakly held), and never pickled.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from typing_extensions import Self

from embgemma_plugins.batching import DEFAULT_BATCH_TOKENS
from embgemma_plugins.errors import InvalidArgumentError
from embgemma_plugins.maths import check_dimensions
from embgemma_plugins.model import MAX_LENGTH, EmbeddingGemma
from embgemma_plugins.onnx_models.store import DEFAULT_MODEL
from embgemma_plugins.prompts import QUERY_TASK, normalise_task
from embgemma_plugins.resolve import check_variant

PROVIDER = "embgemma"
_DOCUMENT_TASKS = {"document", "retrieval document"}
_SHARED: weakref.WeakValueDictionary[tuple[Any, ...], EmbeddingGemma] = (
    weakref.WeakValueDictionary()
)
_SHARED_LOCK = threading.Lock()


def shared_model(key: tuple[Any, ...]) -> EmbeddingGemma:
    """The process's ``EmbeddingGemma`` for ``(model, variant, dimensions, providers,
    threads, max_length, batch_tokens)``, opened if no live object holds one."""
    with _SHARED_LOCK:
        found = _SHARED.get(key)
        if found is None:
            found = EmbeddingGemma(*key[:5], max_length=key[5], batch_tokens=key[6])
            _SHARED[key] = found
        return found


class _Lazy:
    """The loaded model and the key it was opened for; pickles and copies empty."""

    def __init__(self) -> None:
        self.key: tuple[Any, ...] | None = None
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
        title_key: metadata key holding a document's title (``title: {title} | text: ``).
        providers: ONNX Runtime providers (``cpu``, ``cuda``, a list, or ``None``: auto).
        threads: intra-op threads (``None``: one per physical core).
        max_length: tokens per text (longer texts are cut).
        batch_tokens: padded tokens per batch (bounds memory per session run).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model: str = DEFAULT_MODEL
    variant: str | None = None
    dimensions: int = 768
    query_task: str = QUERY_TASK
    title_key: str | None = None
    providers: str | list[str] | None = None
    threads: int | None = Field(default=None, ge=1)
    max_length: int = Field(default=MAX_LENGTH, ge=3, le=MAX_LENGTH)
    batch_tokens: int = Field(default=DEFAULT_BATCH_TOKENS, ge=1)

    _lazy: _Lazy = PrivateAttr(default_factory=_Lazy)

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, v: Any) -> Any:
        if isinstance(v, Path):
            v = str(v)
        if isinstance(v, str) and not v.strip():
            raise ValueError("model must be a hub id or a folder, not empty")
        return v

    @field_validator("variant", "dimensions")
    @classmethod
    def _core_checks(cls, v: Any, info: ValidationInfo) -> Any:
        return check_variant(v) if info.field_name == "variant" else check_dimensions(v)

    @field_validator("query_task")
    @classmethod
    def _query_task(cls, v: str) -> str:
        if normalise_task(v) in _DOCUMENT_TASKS:
            raise ValueError(f"{v!r} is the document prompt; queries need a query task")
        if not v.strip():
            raise ValueError("query_task must not be empty")
        return v

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

    @property
    def client(self) -> EmbeddingGemma:
        """The core model (opened on first use; see :func:`shared_model`)."""
        p = self.providers
        key = (
            *(self.model, self.variant, self.dimensions, tuple(p) if isinstance(p, list) else p),
            *(self.threads, self.max_length, self.batch_tokens),
        )
        lazy = self._lazy
        with lazy.lock:
            if lazy.model is None or lazy.key != key:
                lazy.model, lazy.key = shared_model(key), key
            return lazy.model

    def _embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        try:
            prompt = self.client.prompt_for(task=self.query_task)
        except InvalidArgumentError as e:
            raise InvalidArgumentError(f"query_task: {e}") from None
        out: list[list[float]] = self.client.embed(texts, prompt=prompt).tolist()
        return out

    def _embed_documents(
        self, texts: Sequence[str], titles: Sequence[str | None] | None = None
    ) -> list[list[float]]:
        out: list[list[float]] = self.client.embed_documents(texts, titles=titles).tolist()
        return out

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
                raise InvalidArgumentError(
                    f"{where}.{k}: unknown key; valid keys: provider, {', '.join(keys)}"
                )
        try:
            return cls(**values)
        except ValidationError as e:
            err = e.errors()[0]
            key = ".".join(str(p) for p in err["loc"][:1])
            msg = err["msg"].removeprefix("Value error, ")
            raise InvalidArgumentError(f"{where}.{key}: {msg} (got {err['input']!r})") from None

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
        path = Path(path)
        data = _read(path)
        parts = [p for p in key.split(".") if p] if isinstance(key, str) else list(key)
        for i, part in enumerate(parts):
            if not isinstance(data, Mapping) or part not in data:
                raise InvalidArgumentError(f"{path}: no key {'.'.join(parts[: i + 1])!r}")
            data = data[part]
        return cls.from_config(data, where=f"{path}: {'.'.join(parts) or '<root>'}")

    @classmethod
    def from_provider_string(cls, spec: str) -> Self:
        """Build from ``embgemma:<model>?key=value&...`` (an empty model: the default)."""
        prefix = f"{PROVIDER}:"
        if not isinstance(spec, str) or not spec.startswith(prefix):
            raise InvalidArgumentError(f"provider string must start with {prefix!r}: {spec!r}")
        model, _, query = spec[len(prefix) :].partition("?")
        values: dict[str, Any] = {"model": model} if model else {}
        for k, v in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
            if k in values or k == "provider":  # the prefix gives the provider
                raise InvalidArgumentError(f"{spec}: key {k!r} given twice")
            values[k] = v
        return cls.from_config(values, where=spec)

    def to_provider_string(self) -> str:
        """The inverse of :meth:`from_provider_string`."""
        section = self.to_config()
        section.pop("provider")
        model = section.pop("model")
        flat = {k: ",".join(v) if isinstance(v, list) else v for k, v in section.items()}
        query = urlencode(flat, safe=",/")
        return f"{PROVIDER}:{model}" + (f"?{query}" if query else "")


def _read(path: Path) -> Any:
    if not path.is_file():
        raise InvalidArgumentError(f"config file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        import yaml

        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    if suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        with open(path, "rb") as f:
            return tomllib.load(f)
    if suffix == ".json":
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    raise InvalidArgumentError(f"{path}: unknown config format (use .yaml, .yml, .toml or .json)")


def load_embeddings(
    source: Mapping[str, Any] | str | Path, framework: str, key: str = "embeddings"
) -> EmbeddingGemmaSettings:
    """One call from a section, a provider string or a config file (+ ``key``) to the
    ``framework``'s object: ``"langchain"`` or ``"llamaindex"``."""
    if framework == "langchain":
        from embgemma_plugins.langchain import EmbeddingGemmaEmbeddings as cls
    elif framework == "llamaindex":
        from embgemma_plugins.llamaindex import EmbeddingGemmaEmbedding as cls  # type: ignore[assignment]
    else:
        raise InvalidArgumentError(
            f"framework must be 'langchain' or 'llamaindex', got {framework!r}"
        )
    if isinstance(source, Mapping):
        return cls.from_config(source)
    if isinstance(source, str) and source.startswith(f"{PROVIDER}:"):
        return cls.from_provider_string(source)
    return cls.from_config_file(source, key)
