"""``embgemma embed IN OUT --engine ray``: the local engine's job, chunks run by Ray.

The order of work is the local engine's: check, resolve the model, plan the input,
embed every chunk into a part of ``OUT``'s work folder, assemble with
:func:`~embgemma_plugins.jobs.finish.finish`; the caller reports.  Chunks are the local engine's
chunks, embedded by its code, and assembled by its code, so ``OUT`` holds the same
rows, vectors and metadata.  There is no ``--resume``: a failed or interrupted job
removes its work folder (a killed driver leaves it; ``--overwrite`` clears it).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from typing import Any

from embgemma_plugins.errors import (
    InputError,
    InvalidArgumentError,
    JobError,
    RowError,
    TooLongError,
)
from embgemma_plugins.jobs.finish import finish
from embgemma_plugins.jobs.job import Totals
from embgemma_plugins.jobs.local import Outcome
from embgemma_plugins.jobs.lock import OutLock
from embgemma_plugins.jobs.output import describe_run
from embgemma_plugins.jobs.plan import (
    EmbedOptions,
    check_usage,
    chunking_record,
    input_format,
    resolve_prompt,
)
from embgemma_plugins.jobs.progress import NullProgress, ProgressSink
from embgemma_plugins.jobs.quantise import CALIBRATED
from embgemma_plugins.jobs.workdir import WorkDir
from embgemma_plugins.ray.actors import EmbedTask
from embgemma_plugins.ray.extra import INSTALL_HINT, require_ray
from embgemma_plugins.ray.settings import ModelInfo, bad_row_message
from embgemma_plugins.ray.ship import shipment
from embgemma_plugins.ray.spans import Source, Span, count, number, plan, total_rows
from embgemma_plugins.store.resolve import variants_repo_of


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
               lo: int, hi: int | None, progress: ProgressSink, total: int) -> list[dict[str, Any]]:
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
        raise RowError(bad)
    got = sorted(int(s["index"]) for s in stats)
    if got != list(range(lo, hi)):
        raise RuntimeError(f"chunks {lo}..{hi - 1} expected once each, got {got}")
    return stats


def run_ray(o: EmbedOptions, progress: ProgressSink | None = None, quiet: bool = False
            ) -> Outcome:
    """Run the job of ``o`` on Ray (``o.address``, or a local Ray started and stopped here)."""
    check_usage(o)
    with OutLock(o.out):  # one run per OUT, as for the local engine
        return _run_ray(o, progress, quiet)


def _run_ray(o: EmbedOptions, progress: ProgressSink | None, quiet: bool) -> Outcome:
    try:
        require_ray()
    except ImportError as e:
        raise JobError(f"--engine ray needs Ray: {INSTALL_HINT}") from e
    progress = progress or NullProgress()
    fmt = input_format(o)
    try:
        source = Source(o.input_path, fmt, o.spec, o.chunk_rows)
    except InputError as e:
        raise InvalidArgumentError(str(e)) from e
    info = ModelInfo.resolve(o.model, o.variant, o.variants_repo, o.revision)
    prompt = resolve_prompt(info, o)
    settings = replace(o.settings(threads=1), model=info.model, build_missing=False,
                       variants_repo=variants_repo_of(o.variants_repo) or "")
    layout = o.layout(settings.dimensions)
    task = EmbedTask(settings, layout, prompt, bool(o.title_field), o.on_error, o.on_long,
                     out=str(o.out.resolve()), source=source, chunking=o.chunking)
    work = WorkDir(o.out)
    work.remove()
    work.write_state({"settings": {"engine": "ray"}})  # not resumable by the local engine
    started = connect(o.address, quiet)
    ok = False
    try:
        task = replace(task, ship=shipment(info.files))  # on the cluster's driver node
        spans, total = numbered_spans(source)
        stats: list[dict[str, Any]] = []
        calibration, lo = None, 0
        if o.precision in CALIBRATED:  # the first chunk's vectors fix the int8 ranges
            first = replace(task, calibrate=True)
            stats = run_chunks(source, spans, first, o.actors, 0, 1, progress, total)
            found = [json.loads(s["calibration"]) for s in stats if s["calibration"]]
            calibration, lo = (found[0] if found else None), 1
            if calibration:
                work.write_state({"settings": {"engine": "ray"}, "calibration": calibration})
        if calibration:
            task = replace(task, ranges=calibration["ranges"])
        stats += run_chunks(source, spans, task, o.actors, lo, None, progress, total)
        totals = Totals()
        for s in stats:
            totals.add(s)
        meta = describe_run(
            model=info.model_id, revision=info.revision, variant=info.variant,
            dimensions=settings.dimensions, prompt=prompt, spec=o.spec, precision=o.precision,
            calibration=calibration, max_length=o.max_length, input_path=source.location,
            input_format=fmt, extra={
                "input_rows": totals.rows, "skipped": totals.skipped,
                "truncated": totals.truncated, "long": o.on_long, "long_rows": totals.long,
                "chunking": chunking_record(o), "chunk_rows": o.chunk_rows,
                "batch_tokens": o.batch_tokens, "onnx_sha256": info.onnx_sha256,
                "title_prompt": "title: {title} | text: " if o.title_field else None})
        done = finish(o.out, work, totals.chunks, layout, meta, o.rejects_path)
        ok = True
    except TooLongError as e:
        raise TooLongError(f"{e}; rerun with --on-long truncate to cut such texts") from None
    except RowError as e:
        hint = "" if o.on_error == "skip" else " or add --on-error skip"
        raise RowError(f"{e}; fix the input and rerun{hint}") from None
    finally:
        if not ok:
            work.remove()
        if started:
            import ray

            ray.shutdown()
    cpu = sum(float(s["cpu"]) for s in stats)
    return Outcome(o.out, totals, done.duplicates, done.rejects, cpu, settings.threads,
                   done.row_map)
