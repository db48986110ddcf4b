"""The local engine: check, lock, load, resume, embed, assemble; the result for a summary.

The whole run holds OUT's lock (:mod:`.lock`), so no second run can delete or mix its
work.  A finished run leaves OUT; a failed or interrupted one leaves its finished chunks in
OUT's work folder, no temporary file, and raises a
:class:`~embgemma_plugins.errors.JobError` saying what was kept and how to go on
(:mod:`.failure`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from embgemma_plugins.errors import EmbeddingGemmaError, InvalidArgumentError, JobError
from embgemma_plugins.jobs.failure import explain
from embgemma_plugins.jobs.finish import finish, leftover
from embgemma_plugins.jobs.job import Job, Totals, run
from embgemma_plugins.jobs.lock import OutLock
from embgemma_plugins.jobs.output import describe_run
from embgemma_plugins.jobs.plan import (
    EmbedOptions,
    check_usage,
    chunking_record,
    describe_settings,
    input_format,
    resolve_prompt,
)
from embgemma_plugins.jobs.progress import NullProgress, ProgressSink
from embgemma_plugins.jobs.readers import STDIN, Reader
from embgemma_plugins.jobs.workdir import WorkDir, describe_changes


@dataclass
class Outcome:
    """What a finished run did (for its summary)."""

    out: Path
    totals: Totals
    duplicates: dict[str, int] = field(default_factory=dict)
    rejects: Path | None = None
    cpu_seconds: float | None = None  # Ray: actor CPU time
    threads: int | None = None
    row_map: Path | None = None  # a .npy output that skipped rows: each vector's input row


def load_model(o: EmbedOptions) -> Any:
    from embgemma_plugins import EmbeddingGemma

    try:
        return EmbeddingGemma.from_settings(o.settings())
    except InvalidArgumentError:
        raise
    except EmbeddingGemmaError as e:
        raise JobError(str(e)) from e


def prepare_work(o: EmbedOptions, current: dict[str, Any], say: Any) -> WorkDir:
    work = WorkDir(o.out)
    if leftover(o.out, work):
        work.remove()
    if work.exists() and not o.resume:
        if not o.overwrite:
            raise InvalidArgumentError(
                f"an interrupted run left its work in {work.path}; add --resume to continue "
                "it, or --overwrite to start over")
        work.remove()
    state: dict[str, Any] = {}
    if work.exists():
        state = work.read_state()
        before = dict(state.get("settings", {}))
        if before.get("long") == "error":  # it stopped at the first text over the window, so
            before["long"] = current.get("long")  # no finished part holds one: any policy goes on
        changes = describe_changes(before, current)
        if changes:
            raise InvalidArgumentError(
                "--resume needs the options of the interrupted run; changed: "
                + "; ".join(changes) + ". Use the same options, or --overwrite to start over")
        say(f"embgemma: resuming from {work.path}")
    elif o.resume:
        say("embgemma: nothing to resume; starting a new run")
    state["settings"] = current
    work.write_state(state)
    return work


def run_local(o: EmbedOptions, progress: ProgressSink | None = None, say: Any = None,
              stdin: IO[bytes] | None = None) -> Outcome:
    """Run the job of ``o`` here; ``say`` receives one-line notices."""
    check_usage(o)
    say = say or (lambda _m: None)
    fmt = input_format(o)
    with OutLock(o.out, say):
        # The input is opened (and a CSV header checked) before the model loads.
        reader = Reader(o.input_path, fmt, o.spec, stdin or sys.stdin.buffer)
        try:
            return _run(o, fmt, reader, progress or NullProgress(), say)
        finally:
            reader.close()


def _run(o: EmbedOptions, fmt: str, reader: Reader, progress: ProgressSink, say: Any
         ) -> Outcome:
    work = None
    try:
        model = load_model(o)
        prompt = resolve_prompt(model, o)
        current = describe_settings(o, model, fmt, prompt)
        work = prepare_work(o, current, say)
        job = Job(o.layout(model.dimensions), o.chunk_rows, o.on_error, o.on_long, prompt,
                  model.prompts.document_prompt if o.title_field else None, work.read_state(),
                  o.chunking)
        totals = run(job, model, reader, work, progress)
        meta = describe_run(
            model=current["model"], revision=model.revision, variant=model.variant,
            dimensions=model.dimensions, prompt=prompt, spec=o.spec, precision=o.precision,
            calibration=job.state.get("calibration"), max_length=o.max_length,
            input_path=o.input_path if o.input_path == STDIN else os.path.abspath(o.input_path),
            input_format=fmt, extra={
                "input_rows": totals.rows, "skipped": totals.skipped,
                "truncated": totals.truncated, "long": o.on_long, "long_rows": totals.long,
                "chunking": chunking_record(o), "chunk_rows": o.chunk_rows,
                "batch_tokens": o.batch_tokens, "onnx_sha256": current["onnx_sha256"],
                "title_prompt": "title: {title} | text: " if o.title_field else None})
        # The session (arena, pre-packed weights) is not needed to assemble the parts: let
        # it go first, so the assembly's buffers and id scan do not stack on its memory (the
        # last reference: reference counting frees it, no collection pass needed).
        del model
        done = finish(o.out, work, totals.chunks, job.layout, meta, o.rejects_path)
    except (Exception, KeyboardInterrupt) as e:
        if work is None and not isinstance(e, KeyboardInterrupt):
            raise  # the model or the options: nothing of this run is on disk
        failure = explain(e, o.out, work or WorkDir(o.out), o.rejects_path, o.on_error,
                          o.max_length)
        if failure is e:
            raise
        raise failure from (None if isinstance(e, KeyboardInterrupt) else e)
    return Outcome(o.out, totals, done.duplicates, done.rejects, row_map=done.row_map)
