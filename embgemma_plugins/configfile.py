"""Config files and provider strings: where an ``embeddings`` section comes from.

Pure reading and string handling; what the section means is
:class:`~embgemma_plugins.framework.EmbeddingGemmaSettings`' business.  A provider string
is ``embgemma:<model>?key=value&...`` (an empty model: the default).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from embgemma_plugins.errors import InvalidArgumentError

PROVIDER = "embgemma"


def read_file(path: Path) -> Any:
    """The data of a YAML, TOML or JSON file."""
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


def section_at(path: Path, key: str | Sequence[str]) -> tuple[Any, str]:
    """The section of ``path`` at ``key`` (``"rag.embeddings"``; ``""``: the whole file) and
    the place to name in messages."""
    data = read_file(path)
    parts = [p for p in key.split(".") if p] if isinstance(key, str) else list(key)
    for i, part in enumerate(parts):
        if not isinstance(data, Mapping) or part not in data:
            raise InvalidArgumentError(f"{path}: no key {'.'.join(parts[: i + 1])!r}")
        data = data[part]
    return data, f"{path}: {'.'.join(parts) or '<root>'}"


def is_provider_string(source: object) -> bool:
    return isinstance(source, str) and source.startswith(f"{PROVIDER}:")


def parse_provider_string(spec: str) -> dict[str, Any]:
    """The section a provider string describes (without ``provider``)."""
    if not is_provider_string(spec):
        raise InvalidArgumentError(f"provider string must start with '{PROVIDER}:': {spec!r}")
    model, _, query = spec[len(PROVIDER) + 1 :].partition("?")
    values: dict[str, Any] = {"model": model} if model else {}
    for k, v in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if k in values or k == "provider":  # the prefix gives the provider
            raise InvalidArgumentError(f"{spec}: key {k!r} given twice")
        values[k] = v
    return values


def provider_string(section: Mapping[str, Any]) -> str:
    """The inverse of :func:`parse_provider_string` (``provider`` is ignored)."""
    flat = {k: ",".join(v) if isinstance(v, list) else v for k, v in section.items()
            if k not in ("provider", "model")}
    query = urlencode(flat, safe=",/")
    return f"{PROVIDER}:{section['model']}" + (f"?{query}" if query else "")
