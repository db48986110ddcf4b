"""What ``embgemma embed`` does, in order: check, load, resume, embed, assemble, report."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import click

from embgemma_plugins.cli.finish import finish, leftover
from embgemma_plugins.cli.job import Job, RowError, run
from embgemma_plugins.cli.output import Layout, describe_run
from embgemma_plugins.cli.progress import Progress
from embgemma_plugins.cli.readers import STDIN, InputError, Reader, detect_format
from embgemma_plugins.cli.records import FieldSpec
from embgemma_plugins.cli.report import report, saved_hint
from embgemma_plugins.cli.workdir import WorkDir, describe_changes


@dataclass(frozen=True)
class EmbedArgs:
    input_path: str
    out: Path
    fmt: str | None
    text_field: str
    id_field: str | None
    title_field: str | None
    keep: tuple[str, ...]
    model: str
    variant: str | None
    dim: str
    task: str | None
    prompt: str | None
    provider: str
    threads: int | None
    batch_tokens: int
    max_length: int
    precision: str
    on_error: str
    on_long: str
    rejects: Path | None
    resume: bool
    overwrite: bool
    chunk_rows: int
    quiet: bool
    progress_interval: float | None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> EmbedArgs:
        return cls(**{f.name: options[f.name] for f in fields(cls)})

    @property
    def spec(self) -> FieldSpec:
        return FieldSpec(self.text_field, self.id_field, self.title_field, tuple(self.keep))


def check_usage(a: EmbedArgs) -> None:
    """Misuse found before anything slow happens (click.UsageError, exit code 2)."""
    if a.task is not None and a.prompt is not None:
        raise click.UsageError("give --task or --prompt, not both")
    if a.title_field and (a.task or a.prompt):
        raise click.UsageError("--title-field builds the document prompt; drop --task/--prompt")
    for problem in a.spec.check():
        raise click.UsageError(problem)
    if a.out.suffix.lower() not in (".parquet", ".npy"):
        raise click.UsageError(f"OUT must end in .parquet or .npy, got {a.out.name}")
    if a.out.suffix.lower() == ".npy" and a.keep:
        raise click.UsageError("a .npy output holds only embeddings; write .parquet to --keep")
    if a.input_path != STDIN and not os.path.isfile(a.input_path):
        raise click.UsageError(f"input {a.input_path} does not exist")
    if a.out.exists() and not a.overwrite:
        raise click.UsageError(f"{a.out} exists; add --overwrite to replace it")
    if not a.out.parent.is_dir():
        raise click.UsageError(f"the folder of OUT, {a.out.parent}, does not exist")


def load_model(a: EmbedArgs) -> Any:
    from embgemma_plugins import EmbeddingGemma
    from embgemma_plugins.errors import EmbeddingGemmaError, InvalidArgumentError

    try:
        return EmbeddingGemma(
            a.model, a.variant, int(a.dim), None if a.provider == "auto" else a.provider,
            a.threads, max_length=a.max_length, batch_tokens=a.batch_tokens)
    except InvalidArgumentError as e:
        raise click.UsageError(str(e)) from e
    except EmbeddingGemmaError as e:
        raise click.ClickException(str(e)) from e


def resolve_prompt(model: Any, a: EmbedArgs) -> str:
    from embgemma_plugins.errors import EmbeddingGemmaError

    try:
        return str(model.prompt_for(a.task or ("document" if a.prompt is None else None), a.prompt))
    except EmbeddingGemmaError as e:
        raise click.UsageError(str(e)) from e


def settings(a: EmbedArgs, model: Any, fmt: str, prompt: str) -> dict[str, Any]:
    """Everything that decides the output's bytes: a resumed run must match it."""
    manifest = model.files.manifest
    return {
        "model": manifest.model_id if manifest else a.model, "revision": model.revision,
        "variant": model.variant, "onnx_sha256": manifest.files.get("model.onnx")
        if manifest else None, "dimensions": model.dimensions, "prompt": prompt,
        "text_field": a.text_field, "id_field": a.id_field, "title_field": a.title_field,
        "keep": list(a.keep), "precision": a.precision, "max_length": a.max_length,
        "batch_tokens": a.batch_tokens, "chunk_rows": a.chunk_rows, "format": fmt,
        "threads": a.threads, "provider": model.providers[0],
    }


def prepare_work(a: EmbedArgs, current: dict[str, Any], say: Any) -> WorkDir:
    work = WorkDir(a.out)
    if leftover(a.out, work):
        work.remove()
    if work.exists() and not a.resume:
        if not a.overwrite:
            raise click.UsageError(
                f"an interrupted run left its work in {work.path}; add --resume to continue "
                "it, or --overwrite to start over")
        work.remove()
    state: dict[str, Any] = {}
    if work.exists():
        state = work.read_state()
        changes = describe_changes(state.get("settings", {}), current)
        if changes:
            raise click.UsageError(
                "--resume needs the options of the interrupted run; changed: "
                + "; ".join(changes) + ". Use the same options, or --overwrite to start over")
        say(f"embgemma: resuming from {work.path}")
    elif a.resume:
        say("embgemma: nothing to resume; starting a new run")
    state["settings"] = current
    work.write_state(state)
    return work


def execute(a: EmbedArgs) -> None:
    check_usage(a)
    say = (lambda _m: None) if a.quiet else (lambda m: click.echo(m, err=True))
    try:
        fmt = detect_format(a.input_path, a.fmt)
    except InputError as e:
        raise click.UsageError(str(e)) from e
    model = load_model(a)
    prompt = resolve_prompt(model, a)
    current = settings(a, model, fmt, prompt)
    work = prepare_work(a, current, say)
    job = Job(Layout(a.spec, model.dimensions, a.precision), a.chunk_rows, a.on_error,
              a.on_long, prompt, model.prompts.document_prompt if a.title_field else None,
              work.read_state())
    mode = Progress.choose(a.quiet)
    interval = a.progress_interval
    progress = Progress(mode, interval if interval is not None else 0.2 if mode == "bar" else 30)
    previous = _on_sigterm(_interrupt)  # `kill` is reported like Ctrl-C
    try:
        reader = Reader(a.input_path, fmt, a.spec, sys.stdin.buffer)
        try:
            totals = run(job, model, reader, work, progress)
        finally:
            reader.close()
            progress.close()
        meta = describe_run(
            model=current["model"], revision=model.revision, variant=model.variant,
            dimensions=model.dimensions, prompt=prompt, spec=a.spec, precision=a.precision,
            calibration=job.state.get("calibration"), max_length=a.max_length,
            input_path=a.input_path if a.input_path == STDIN else os.path.abspath(a.input_path),
            input_format=fmt, extra={
                "input_rows": totals.rows, "skipped": totals.skipped,
                "truncated": totals.truncated, "chunk_rows": a.chunk_rows,
                "batch_tokens": a.batch_tokens, "onnx_sha256": current["onnx_sha256"],
                "title_prompt": "title: {title} | text: " if a.title_field else None})
        # The session (arena, pre-packed weights) is not needed to assemble the parts: let
        # it go first, so the assembly's buffers and id scan do not stack on its memory (the
        # last reference: reference counting frees it, no collection pass needed).
        del model
        rejects = a.rejects or a.out.with_name(a.out.name + ".rejects.jsonl")
        done = finish(a.out, work, totals.chunks, job.layout, meta, rejects)
    except InputError as e:
        raise click.ClickException(f"{e}{saved_hint(work)}") from e
    except RowError as e:
        hint = "" if a.on_error == "skip" else " or add --on-error skip"
        raise click.ClickException(f"{e}{saved_hint(work)}; fix the input and rerun with "
                                   f"--resume{hint}") from e
    except KeyboardInterrupt:
        click.echo(f"embgemma: interrupted{saved_hint(work)}; rerun with --resume", err=True)
        raise SystemExit(130) from None
    finally:
        if previous is not None:
            _on_sigterm(previous)
    report(a.out, a.id_field, totals, progress, done.duplicates, done.rejects, say)


def _on_sigterm(handler: Any) -> Any:
    """Install ``handler`` for SIGTERM (main thread only); returns the previous one."""
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        return None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
