"""A batch job's options and the checks made before anything slow happens.

One set of options and one set of usage checks for both engines (``local`` and ``ray``):
misuse raises :class:`~embgemma_plugins.errors.InvalidArgumentError` naming the option.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

from embgemma_plugins.batching import DEFAULT_BATCH_TOKENS
from embgemma_plugins.errors import EmbeddingGemmaError, InputError, InvalidArgumentError
from embgemma_plugins.jobs.readers import STDIN, detect_format
from embgemma_plugins.jobs.records import FieldSpec
from embgemma_plugins.jobs.workdir import WorkDir
from embgemma_plugins.settings import ModelSettings
from embgemma_plugins.store.layout import DEFAULT_MODEL
from embgemma_plugins.tokenizer import MAX_LENGTH

ENGINES = ("local", "ray")
CHUNK_ROWS = 256


@dataclass(frozen=True)
class EmbedOptions:
    """What ``embgemma embed IN OUT`` is asked to do (the CLI's options, by name)."""

    input_path: str
    out: Path
    fmt: str | None = None
    text_field: str = "text"
    id_field: str | None = None
    title_field: str | None = None
    keep: tuple[str, ...] = ()
    model: str = DEFAULT_MODEL
    variant: str | None = None
    variants_repo: str | None = None  # prebuilt variants (None: $EMBGEMMA_VARIANTS_REPO)
    revision: str | None = None  # of that repository
    dimensions: int = 768
    task: str | None = None
    prompt: str | None = None
    provider: str = "auto"
    threads: int | None = None
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    max_length: int = MAX_LENGTH
    precision: str = "float32"
    on_error: str = "error"
    on_long: str = "truncate"
    rejects: Path | None = None
    resume: bool = False
    overwrite: bool = False
    chunk_rows: int = CHUNK_ROWS
    engine: str = "local"
    address: str | None = None  # Ray cluster
    actors: int | None = None  # Ray actors

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @property
    def spec(self) -> FieldSpec:
        return FieldSpec(self.text_field, self.id_field, self.title_field, tuple(self.keep))

    def settings(self, threads: int | None = None) -> ModelSettings:
        """The model settings of this job (``threads``: the engine's default if unset)."""
        return ModelSettings(self.model, self.variant, self.dimensions,
                             None if self.provider == "auto" else self.provider,
                             self.threads or threads, self.max_length, self.batch_tokens,
                             variants_repo=self.variants_repo, revision=self.revision)

    @property
    def rejects_path(self) -> Path:
        return self.rejects or self.out.with_name(self.out.name + ".rejects.jsonl")


def check_usage(o: EmbedOptions) -> None:
    """Misuse found before anything slow happens, for either engine."""
    if o.engine not in ENGINES:
        raise InvalidArgumentError(f"engine must be one of {', '.join(ENGINES)}, got {o.engine!r}")
    if o.engine == "local" and (o.address or o.actors):
        raise InvalidArgumentError("--address and --actors need --engine ray")
    if o.task is not None and o.prompt is not None:
        raise InvalidArgumentError("give --task or --prompt, not both")
    if o.title_field and (o.task or o.prompt):
        raise InvalidArgumentError("--title-field builds the document prompt; drop --task/--prompt")
    for problem in o.spec.check():
        raise InvalidArgumentError(problem)
    if o.out.suffix.lower() not in (".parquet", ".npy"):
        raise InvalidArgumentError(f"OUT must end in .parquet or .npy, got {o.out.name}")
    if o.out.suffix.lower() == ".npy" and o.keep:
        raise InvalidArgumentError("a .npy output holds only embeddings; write .parquet to --keep")
    if o.engine == "ray":
        if o.resume:
            raise InvalidArgumentError("--resume is for --engine local; a Ray job starts over")
        if o.input_path == STDIN:
            raise InvalidArgumentError("--engine ray reads a file or URI, not stdin")
    elif o.input_path != STDIN and not os.path.isfile(o.input_path):
        raise InvalidArgumentError(f"input {o.input_path} does not exist")
    if o.out.exists() and not o.overwrite:
        raise InvalidArgumentError(f"{o.out} exists; add --overwrite to replace it")
    if not o.out.parent.is_dir():
        raise InvalidArgumentError(f"the folder of OUT, {o.out.parent}, does not exist")
    if o.engine == "ray" and WorkDir(o.out).path.exists() and not o.overwrite:
        raise InvalidArgumentError(f"an interrupted run left its work in {WorkDir(o.out).path}; "
                                   "add --overwrite to start over")
    o.settings()  # the model settings' own checks (dimensions, max_length, ...)


def input_format(o: EmbedOptions) -> str:
    """IN's format, from --format or its extension."""
    try:
        return detect_format(o.input_path, o.fmt)
    except InputError as e:
        raise InvalidArgumentError(str(e)) from e


class Prompted(Protocol):
    """What choosing the prompt needs: a model, or the Ray driver's view of one."""

    def prompt_for(self, task: str | None = None, prompt: str | None = None) -> str: ...


def resolve_prompt(model: Prompted, o: EmbedOptions) -> str:
    """The job's prompt: --prompt, --task's, or the document prompt."""
    try:
        return str(model.prompt_for(o.task or ("document" if o.prompt is None else None), o.prompt))
    except EmbeddingGemmaError as e:
        raise InvalidArgumentError(str(e)) from e


def describe_settings(o: EmbedOptions, model: Any, fmt: str, prompt: str) -> dict[str, Any]:
    """Everything that decides the output's bytes: a resumed run must match it."""
    manifest = model.files.manifest
    return {
        "model": manifest.model_id if manifest else o.model, "revision": model.revision,
        "variant": model.variant, "onnx_sha256": manifest.files.get("model.onnx")
        if manifest else None, "dimensions": model.dimensions, "prompt": prompt,
        "text_field": o.text_field, "id_field": o.id_field, "title_field": o.title_field,
        "keep": list(o.keep), "precision": o.precision, "max_length": o.max_length,
        "batch_tokens": o.batch_tokens, "chunk_rows": o.chunk_rows, "format": fmt,
        "threads": o.threads, "provider": model.providers[0],
    }
