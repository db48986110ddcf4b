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
from embgemma_plugins.chunking import check_sizes
from embgemma_plugins.errors import EmbeddingGemmaError, InputError, InvalidArgumentError
from embgemma_plugins.jobs.finish import sidecar
from embgemma_plugins.jobs.longtext import LONG_POLICIES, ChunkRows
from embgemma_plugins.jobs.output import Layout
from embgemma_plugins.jobs.readers import STDIN, detect_format
from embgemma_plugins.jobs.records import FieldSpec
from embgemma_plugins.jobs.workdir import WorkDir
from embgemma_plugins.settings import ModelSettings
from embgemma_plugins.store.layout import DEFAULT_MODEL
from embgemma_plugins.tokenizer import MAX_LENGTH

ENGINES = ("local", "ray")
CHUNK_COLUMNS = ("chunk", "start", "end", "text")
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
    on_long: str = "truncate"  # --long: truncate, error, mean or late
    chunk_tokens: int | None = None  # one output row per chunk of this many tokens
    chunk_overlap: int | None = None  # the chunker's default for chunk_tokens
    late: bool = False  # chunk vectors by late chunking
    keep_text: bool = False  # the chunk's text in the output
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
    def chunking(self) -> ChunkRows | None:
        """The chunk-row options (``None``: one row per input row)."""
        if self.chunk_tokens is None:
            return None
        return ChunkRows(self.chunk_tokens, check_sizes(self.chunk_tokens, self.chunk_overlap),
                         self.late, self.keep_text)

    def layout(self, dimensions: int) -> Layout:
        """The output's columns for embeddings of ``dimensions``."""
        return Layout(self.spec, dimensions, self.precision, self.chunk_tokens is not None,
                      self.keep_text)

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
    check_long_options(o)
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
    if o.input_path != STDIN and same_file(o.input_path, o.out):
        raise InvalidArgumentError(f"OUT is the input file {o.input_path}; write another file")
    if o.out.exists() and not o.overwrite:
        raise InvalidArgumentError(f"{o.out} exists; add --overwrite to replace it")
    if not o.out.parent.is_dir():
        raise InvalidArgumentError(f"the folder of OUT, {o.out.parent}, does not exist")
    if not os.access(o.out.parent, os.W_OK | os.X_OK):
        raise InvalidArgumentError(f"cannot write in the folder of OUT, {o.out.parent} "
                                   "(read-only); choose an OUT in a folder you can write")
    check_rejects(o)
    if o.engine == "ray" and WorkDir(o.out).path.exists() and not o.overwrite:
        raise InvalidArgumentError(f"an interrupted run left its work in {WorkDir(o.out).path}; "
                                   "add --overwrite to start over")
    o.settings()  # the model settings' own checks (dimensions, max_length, ...)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (same path once resolved, or a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_rejects(o: EmbedOptions) -> None:
    """The rejects file may not be the input, OUT or OUT's sidecar, nor replace a file
    without --overwrite (a resumed run may find its own, written just before a kill)."""
    path, flag = o.rejects_path, "--rejects" if o.rejects else "the rejects file"
    if o.input_path != STDIN and same_file(path, o.input_path):
        raise InvalidArgumentError(f"{flag} {path} is the input file; choose another path")
    for name, other in (("OUT", o.out), ("OUT's metadata file", sidecar(o.out))):
        if same_file(path, other):
            raise InvalidArgumentError(f"{flag} {path} is {name}; choose another path")
    if path.is_dir() or not path.parent.is_dir():
        raise InvalidArgumentError(f"{flag} {path} is a folder or in a folder that does not exist")
    if path.exists() and not o.overwrite and not (o.resume and WorkDir(o.out).exists()):
        raise InvalidArgumentError(f"{flag} {path} exists; add --overwrite to replace it, "
                                   "or choose another --rejects")


def check_long_options(o: EmbedOptions) -> None:
    """--long, and the chunk-row options (--chunk-tokens and what only makes sense with it)."""
    if o.on_long not in LONG_POLICIES:
        raise InvalidArgumentError(f"--long must be one of {', '.join(LONG_POLICIES)}")
    if o.chunk_tokens is None:
        for flag, given in (("--late", o.late), ("--keep-text", o.keep_text),
                            ("--chunk-overlap", o.chunk_overlap is not None)):
            if given:
                raise InvalidArgumentError(f"{flag} needs --chunk-tokens (one row per chunk)")
        return
    if o.on_long != "truncate":
        raise InvalidArgumentError("--long is for whole texts; with --chunk-tokens every "
                                   "chunk fits the window")
    if o.out.suffix.lower() == ".npy":
        raise InvalidArgumentError("chunk rows need a .parquet OUT (id, chunk, start, end)")
    taken = [n for n in o.keep if n in CHUNK_COLUMNS]
    if taken:
        raise InvalidArgumentError(f"--keep {taken[0]}: '{taken[0]}' is a column of chunk rows")
    try:
        check_sizes(o.chunk_tokens, o.chunk_overlap)
    except InvalidArgumentError as e:
        raise InvalidArgumentError(str(e).replace("max_tokens", "--chunk-tokens")
                                   .replace("overlap", "--chunk-overlap")) from None
    if o.chunk_tokens > o.max_length:
        raise InvalidArgumentError(f"--chunk-tokens {o.chunk_tokens} is more than --max-length "
                                   f"{o.max_length}")


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
        "threads": o.threads, "provider": model.providers[0], "long": o.on_long,
        "chunking": chunking_record(o),
    }


def chunking_record(o: EmbedOptions) -> dict[str, Any] | None:
    """The chunk-row options as the output's metadata records them."""
    if o.chunk_tokens is None:
        return None
    overlap = check_sizes(o.chunk_tokens, o.chunk_overlap)
    return {"max_tokens": o.chunk_tokens, "overlap": overlap, "late": o.late,
            "keep_text": o.keep_text, "offsets": "characters (Python str indices)"}
