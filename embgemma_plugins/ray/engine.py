"""``embgemma embed IN OUT --engine ray``: the local engine's job, chunks run by Ray.

The order of work is the local engine's: check, resolve the model, plan the input,
embed every chunk into a part of ``OUT``'s work folder, assemble with
:func:`~embgemma_plugins.cli.finish.finish`, report.  Chunks are the local engine's
chunks, embedded by its code, and assembled by its code, so ``OUT`` holds the same
rows, vectors and metadata.  There is no ``--resume``: a failed or interrupted job
removes its work folder (a killed driver leaves it; ``--overwrite`` clears it).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import click

from embgemma_plugins.cli.embed_run import EmbedArgs, resolve_prompt
from embgemma_plugins.cli.finish import finish
from embgemma_plugins.cli.job import Totals
from embgemma_plugins.cli.output import Layout, describe_run
from embgemma_plugins.cli.progress import Progress
from embgemma_plugins.cli.quantise import CALIBRATED
from embgemma_plugins.cli.readers import InputError, detect_format
from embgemma_plugins.cli.report import report
from embgemma_plugins.cli.workdir import WorkDir
from embgemma_plugins.errors import EmbeddingGemmaError
from embgemma_plugins.ray import INSTALL_HINT, require_ray
from embgemma_plugins.ray.actors import EmbedTask
from embgemma_plugins.ray.settings import BadRowError, ModelInfo, ModelSpec, bad_row_message
from embgemma_plugins.ray.spans import Source, Span, count, number, plan, total_rows


def check_usage(a: EmbedArgs) -> None:
    """Misuse found before Ray starts (click.UsageError, exit code 2)."""
    if a.resume:
        raise click.UsageError("--resume is for --engine local; a Ray job starts over")
    if a.input_path == "-":
        raise click.UsageError("--engine ray reads a file or URI, not stdin")
    for problem in a.spec.check():
        raise click.UsageError(problem)
    if a.task is not None and a.prompt is not None:
        raise click.UsageError("give --task or --prompt, not both")
    if a.title_field and (a.task or a.prompt):
        raise click.UsageError("--title-field builds the document prompt; drop --task/--prompt")
    if a.out.suffix.lower() not in (".parquet", ".npy"):
        raise click.UsageError(f"OUT must end in .parquet or .npy, got {a.out.name}")
    if a.out.suffix.lower() == ".npy" and a.keep:
        raise click.UsageError("a .npy output holds only embeddings; write .parquet to --keep")
    if a.out.exists() and not a.overwrite:
        raise click.UsageError(f"{a.out} exists; add --overwrite to replace it")
    if not a.out.parent.is_dir():
        raise click.UsageError(f"the folder of OUT, {a.out.parent}, does not exist")
    work = WorkDir(a.out)
    if work.path.exists() and not a.overwrite:
        raise click.UsageError(f"an interrupted run left its work in {work.path}; "
                               "add --overwrite to start over")


def connect(address: str | None, quiet: bool) -> bool:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), else start a local one.
    Returns whether this call started Ray (and so must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    local = address is None and not os.environ.get("RAY_ADDRESS")
    extra: dict[str, Any] = {"include_dashboard": False} if local else {}
    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=not quiet, **extra)
    return True


def numbered_spans(source: Source) -> tuple[list[Span], int]:
    """The input's spans with their first rows (counted by Ray tasks), and its rows."""
    import ray

    spans = plan(source)
    if source.fmt == "parquet":
        return spans, total_rows(spans, [])
    counter = ray.remote(num_cpus=0.5, max_retries=3)(count)
    counts = ray.get([counter.remote(source, s) for s in spans])
    return number(spans, counts), total_rows(spans, counts)


def run_chunks(source: Source, spans: list[Span], task: EmbedTask, actors: int | None,
               lo: int, hi: int | None, progress: Progress, total: int) -> list[dict[str, Any]]:
    """Stats rows of chunks ``[lo, hi)``, checked: each exactly once, none missing."""
    from embgemma_plugins.ray.dataset import chunk_dataset, one_chunk_per_block

    chunks = -(-total // source.chunk_rows)
    hi = chunks if hi is None else min(hi, chunks)
    if lo >= hi:
        return []
    stats: list[dict[str, Any]] = []
    done = 0
    progress.begin(None)  # the rate counts actor start-up: that is what a job costs
    bad: str | None = None
    with one_chunk_per_block():
        ds = chunk_dataset(source, spans, task, actors, lo, hi)
        try:
            for row in ds.iter_rows():
                stats.append(dict(row))
                done += int(row["rows"])
                progress.advance(int(row["written"]), int(row["tokens"]), done / max(total, 1))
        except Exception as e:
            bad = bad_row_message(e)
            if bad is None:
                raise
        # Ray Data keeps a failed job's actors (and their CPUs) while its Dataset lives;
        # an error whose traceback reaches it would keep them for as long as the error.
        del ds
    if bad is not None:
        raise BadRowError(bad)
    got = sorted(int(s["index"]) for s in stats)
    if got != list(range(lo, hi)):
        raise RuntimeError(f"chunks {lo}..{hi - 1} expected once each, got {got}")
    return stats


def execute_ray(a: EmbedArgs, address: str | None, actors: int | None) -> None:
    check_usage(a)
    try:
        require_ray()
    except ImportError as e:
        raise click.ClickException(f"--engine ray needs Ray: {INSTALL_HINT}") from e
    say: Callable[[str], None] = (
        (lambda _m: None) if a.quiet else (lambda m: click.echo(m, err=True)))
    try:
        fmt = detect_format(a.input_path, a.fmt)
        source = Source(a.input_path, fmt, a.spec, a.chunk_rows)
        info = ModelInfo.resolve(a.model, a.variant)
    except InputError as e:
        raise click.UsageError(str(e)) from e
    except EmbeddingGemmaError as e:
        raise click.ClickException(str(e)) from e
    prompt = resolve_prompt(info, a)
    dims = int(a.dim)
    threads = a.threads or 1
    layout = Layout(a.spec, dims, a.precision)
    spec = ModelSpec(info.model, a.variant, dims, None if a.provider == "auto" else a.provider,
                     threads, a.max_length, a.batch_tokens)
    task = EmbedTask(spec, layout, prompt, bool(a.title_field), a.on_error, a.on_long,
                     out=str(a.out.resolve()), source=source)
    work = WorkDir(a.out)
    work.remove()
    work.write_state({"settings": {"engine": "ray"}})  # not resumable by the local engine
    started = connect(address, a.quiet)
    mode = Progress.choose(a.quiet)
    interval = a.progress_interval
    progress = Progress(mode, interval if interval is not None else 0.2 if mode == "bar" else 30)
    ok = False
    try:
        try:
            spans, total = numbered_spans(source)
        except InputError as e:
            raise click.ClickException(str(e)) from e
        stats: list[dict[str, Any]] = []
        calibration, lo = None, 0
        if a.precision in CALIBRATED:  # the first chunk's vectors fix the int8 ranges
            first = replace(task, calibrate=True)
            stats = run_chunks(source, spans, first, actors, 0, 1, progress, total)
            found = [json.loads(s["calibration"]) for s in stats if s["calibration"]]
            calibration, lo = (found[0] if found else None), 1
            if calibration:
                work.write_state({"settings": {"engine": "ray"}, "calibration": calibration})
        if calibration:
            task = replace(task, ranges=calibration["ranges"])
        stats += run_chunks(source, spans, task, actors, lo, None, progress, total)
        progress.close()
        totals = Totals()
        for s in stats:
            totals.add(s)
        meta = describe_run(
            model=info.model_id, revision=info.revision, variant=info.variant, dimensions=dims,
            prompt=prompt, spec=a.spec, precision=a.precision, calibration=calibration,
            max_length=a.max_length, input_path=source.location, input_format=fmt, extra={
                "input_rows": totals.rows, "skipped": totals.skipped,
                "truncated": totals.truncated, "chunk_rows": a.chunk_rows,
                "batch_tokens": a.batch_tokens, "onnx_sha256": info.onnx_sha256,
                "title_prompt": "title: {title} | text: " if a.title_field else None})
        rejects = a.rejects or a.out.with_name(a.out.name + ".rejects.jsonl")
        done = finish(a.out, work, totals.chunks, layout, meta, rejects)
        ok = True
    except BadRowError as e:
        hint = "" if a.on_error == "skip" else " or add --on-error skip"
        raise click.ClickException(f"{e}; fix the input and rerun{hint}") from None
    finally:
        progress.close()
        if not ok:
            work.remove()
        if started:
            import ray

            ray.shutdown()
    report(a.out, a.id_field, totals, progress, done.duplicates, done.rejects, say)
    cpu = sum(float(s["cpu"]) for s in stats)
    say(f"embgemma: {totals.tokens / max(cpu, 1e-9):,.0f} tokens per actor CPU-second "
        f"({threads} thread(s) per actor): the per-core rate that sizes a cluster")
