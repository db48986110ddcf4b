"""The variant registry: each variant's name, fidelity bar, default flag and onnx-community
file, read from ``recipes.toml``, the one definition of a variant.

The same file holds each variant's build recipe (read by ``onnx_models/recipe.py``); the
runtime reads only the keys below, so a new variant is a new table there and no code.
``EMBGEMMA_RECIPES`` names another file (an organisation's own recipes).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from embgemma_plugins.errors import InvalidArgumentError

ENV_RECIPES = "EMBGEMMA_RECIPES"
RECIPES = Path(__file__).with_name("recipes.toml")
#: Keys of a table that the registry reads; every other key is the build's recipe.
REGISTRY_KEYS = ("bar", "default", "community_file", "build")


@dataclass(frozen=True)
class Bar:
    """What a variant must reach against the fp32 reference on the fidelity corpus."""

    mean_cosine: float
    min_cosine: float
    top10_overlap: float  # at every Matryoshka size
    max_size_mb: float


@dataclass(frozen=True)
class BuildCost:
    """What a first build of the variant takes on a 2-core machine (docs/variants.md)."""

    minutes: float
    peak_gb: float


@dataclass(frozen=True)
class VariantInfo:
    name: str
    bar: Bar
    default: bool
    community_file: str | None  # onnx/<file> in the onnx-community layout
    table: Mapping[str, Any]  # the whole table: the build reads its recipe from it
    build: BuildCost | None = None  # told to a user before a build on first use


def recipe_digest(table: Mapping[str, Any]) -> str:
    """The sha256 of a variant's build recipe (its table without the registry's keys), as a
    manifest records it: a changed recipe makes the variants built by it stale."""
    recipe = {k: v for k, v in table.items() if k not in REGISTRY_KEYS}
    text = json.dumps(recipe, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def recipes_path() -> Path:
    """The recipes file in use: ``$EMBGEMMA_RECIPES`` or the packaged one."""
    env = os.environ.get(ENV_RECIPES)
    return Path(env).expanduser() if env else RECIPES


def _toml() -> Any:
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib


def _info(path: Path, name: str, table: Any) -> VariantInfo:
    where = f"{path}: [{name}]"
    if not isinstance(table, dict):
        raise InvalidArgumentError(f"{where} must be a table")
    bar = table.get("bar")
    keys = [f.name for f in fields(Bar)]
    if not isinstance(bar, dict) or sorted(bar) != sorted(keys):
        raise InvalidArgumentError(f"{where} needs bar = {{ {', '.join(keys)} }}")
    if not all(isinstance(v, (int, float)) for v in bar.values()):
        raise InvalidArgumentError(f"{where}: every bar value must be a number")
    community = table.get("community_file")
    if community is not None and not isinstance(community, str):
        raise InvalidArgumentError(f"{where}: community_file must be a string")
    default = table.get("default", False)
    if not isinstance(default, bool):
        raise InvalidArgumentError(f"{where}: default must be true or false")
    cost = table.get("build")
    names = [f.name for f in fields(BuildCost)]
    if cost is not None and (not isinstance(cost, dict) or sorted(cost) != sorted(names)
                             or not all(isinstance(v, (int, float)) for v in cost.values())):
        raise InvalidArgumentError(f"{where}: build must be {{ {', '.join(names)} }} (numbers)")
    return VariantInfo(name, Bar(**{k: float(bar[k]) for k in keys}), default, community, table,
                       BuildCost(**{k: float(cost[k]) for k in names}) if cost else None)


def load(path: Path) -> dict[str, VariantInfo]:
    """The variants of the recipes file ``path``, in its order (cached until it changes)."""
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as e:
        raise InvalidArgumentError(f"cannot read the variant recipes {path}: {e}") from None
    return _load(path, stamp)


@functools.lru_cache(maxsize=4)
def _load(path: Path, mtime_ns: int) -> dict[str, VariantInfo]:
    try:
        with open(path, "rb") as f:
            data = _toml().load(f)
    except OSError as e:
        raise InvalidArgumentError(f"cannot read the variant recipes {path}: {e}") from None
    except ValueError as e:  # tomllib.TOMLDecodeError
        raise InvalidArgumentError(f"{path} is not valid TOML: {e}") from None
    found = {name: _info(path, name, table) for name, table in data.items()}
    defaults = [v.name for v in found.values() if v.default]
    if len(defaults) != 1:
        raise InvalidArgumentError(
            f"{path}: exactly one variant must have default = true, found {defaults or 'none'}"
        )
    return found


def registry() -> dict[str, VariantInfo]:
    """Every variant, in the file's (display) order."""
    return load(recipes_path())


def variants() -> tuple[str, ...]:
    """Variant names in display order."""
    return tuple(registry())


def default_variant() -> str:
    """The variant used when none is named."""
    return next(v.name for v in registry().values() if v.default)


def check_variant(variant: str | None) -> str | None:
    """``variant`` if the registry knows it (``None`` passes: the default applies)."""
    if variant is not None and variant not in registry():
        raise InvalidArgumentError(
            f"variant must be one of {', '.join(variants())}, got {variant!r}"
        )
    return variant


def info(variant: str) -> VariantInfo:
    check_variant(variant)
    return registry()[variant]
