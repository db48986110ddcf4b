"""The model settings, defined once: what opens an :class:`~embgemma_plugins.EmbeddingGemma`.

``EmbeddingGemma``, the LangChain and LlamaIndex classes, config files, the Ray engine and
the server all describe a model with :class:`ModelSettings`, and all of them check it here.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from embgemma_plugins.batching import DEFAULT_BATCH_TOKENS
from embgemma_plugins.errors import InvalidArgumentError
from embgemma_plugins.maths import check_dimensions
from embgemma_plugins.session import ProviderSpec
from embgemma_plugins.store.layout import DEFAULT_MODEL
from embgemma_plugins.store.registry import check_variant
from embgemma_plugins.tokenizer import MAX_LENGTH, MIN_LENGTH

Providers = str | Sequence[ProviderSpec] | None


@dataclass(frozen=True)
class ModelSettings:
    """Which model and how it runs (see :class:`~embgemma_plugins.EmbeddingGemma`).

    Frozen and hashable (a provider list becomes a tuple of providers), so equal settings share one
    loaded model (:func:`embgemma_plugins.shared.shared_model`) and pickle to Ray actors.
    """

    model: str = DEFAULT_MODEL
    variant: str | None = None
    dimensions: int = 768
    providers: Providers = None
    threads: int | None = None
    max_length: int = MAX_LENGTH
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    build_missing: bool = True
    variants_repo: str | None = None  # None: $EMBGEMMA_VARIANTS_REPO; "": none
    revision: str | None = None  # of a hub repository of prebuilt variants

    def __post_init__(self) -> None:
        model = str(self.model) if isinstance(self.model, Path) else self.model
        if not isinstance(model, str) or not model.strip():
            raise InvalidArgumentError("model must be a hub id or a folder, not empty")
        object.__setattr__(self, "model", model)
        check_variant(self.variant)
        object.__setattr__(self, "dimensions", check_dimensions(self.dimensions))
        p = self.providers
        if isinstance(p, tuple) and len(p) == 2 and isinstance(p[1], dict):
            p = (p,)  # one (name, options) pair: a list of one provider
        if p is not None and not isinstance(p, str):
            object.__setattr__(self, "providers", tuple(p))  # a list of providers
        for name in ("threads", "max_length", "batch_tokens"):
            value = getattr(self, name)
            if value is not None or name != "threads":
                object.__setattr__(self, name, _integer(name, value))
        if self.threads is not None and self.threads < 1:
            raise InvalidArgumentError(f"threads must be a positive integer, got {self.threads}")
        if not MIN_LENGTH <= self.max_length <= MAX_LENGTH:
            raise InvalidArgumentError(
                f"max_length must be in {MIN_LENGTH}..{MAX_LENGTH}, got {self.max_length}"
            )
        if self.batch_tokens < 1:
            raise InvalidArgumentError(f"batch_tokens must be positive, got {self.batch_tokens}")
        repo = self.variants_repo
        if repo is not None and (not isinstance(repo, str) or (
                repo and (repo.count("/") != 1 or repo.startswith((".", "/", "~"))))):
            raise InvalidArgumentError(
                f"variants_repo must be a hub repository id (org/name), got {repo!r}")
        if self.revision is not None and (not isinstance(self.revision, str)
                                          or not self.revision.strip()):
            raise InvalidArgumentError(f"revision must be a non-empty string, got "
                                       f"{self.revision!r}")

    def provider_list(self) -> str | list[ProviderSpec] | None:
        """The providers as ONNX Runtime sessions take them (a list, not a tuple)."""
        p = self.providers
        return p if p is None or isinstance(p, str) else list(p)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def check(cls, name: str, value: Any) -> Any:
        """``value`` for the setting ``name`` after this class's checks (raises if bad);
        how a config section names the key a bad value came from."""
        return getattr(cls(**{name: value}), name)


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidArgumentError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise InvalidArgumentError(f"{name} must be an integer, got {value!r}") from None
