"""Ray Data pipelines: :func:`embed_dataset` (public) and the CLI's chunk pipeline.

Fault tolerance is Ray's, configured here: actors are restarted without limit
(``max_restarts=-1``) and a call interrupted by an actor's death is retried on the
restarted or another actor (``max_task_retries=-1``); read tasks are retried by Ray
Data as tasks.  Each actor reserves ``threads`` CPUs and runs ``threads`` ONNX
Runtime threads, so Ray places at most ``CPUs // threads`` actors on a node.
"""

from __future__ import annotations

import logging
import pickle
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from embgemma_plugins.batching import DEFAULT_BATCH_TOKENS
from embgemma_plugins.errors import InvalidArgumentError
from embgemma_plugins.jobs.longtext import LONG_POLICIES
from embgemma_plugins.jobs.output import Layout
from embgemma_plugins.jobs.quantise import CALIBRATED, Ranges, check_precision
from embgemma_plugins.jobs.records import FieldSpec
from embgemma_plugins.maths import check_dimensions
from embgemma_plugins.ray.actors import ChunkEmbedder, EmbedTask, RowEmbedder
from embgemma_plugins.ray.extra import require_ray
from embgemma_plugins.ray.settings import ModelInfo
from embgemma_plugins.ray.ship import shipment
from embgemma_plugins.ray.spans import Source, Span, read
from embgemma_plugins.settings import ModelSettings
from embgemma_plugins.store.layout import DEFAULT_MODEL
from embgemma_plugins.store.resolve import variants_repo_of
from embgemma_plugins.tokenizer import MAX_LENGTH

if TYPE_CHECKING:
    from ray.data import Dataset

RETRIES = {"max_restarts": -1, "max_task_retries": -1}


def retries() -> dict[str, int]:
    """``RETRIES`` as ``map_batches`` arguments.  Ray Data 2.60 made them the default
    for actor pools and deprecated passing them, so they are passed only before."""
    import ray

    version = tuple(int(x) for x in ray.__version__.split(".")[:2] if x.isdigit())
    return {} if version >= (2, 60) else dict(RETRIES)


@contextmanager
def one_chunk_per_block() -> Iterator[None]:
    """Keep every chunk in a block of its own while the CLI's pipeline is built and run.

    Ray Data merges small blocks up to ``target_max_block_size``, and a block goes to
    one actor: a span's chunks would all queue on one actor.  One chunk per block lets
    every actor take chunks as it frees up, and a retry redo one chunk only.
    """
    import ray.data

    # The CLI prints its own progress lines: Ray Data's bars and INFO lines would repeat them
    # (its logging is configured when ray.data is imported, so this comes after).
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    saved = ctx.target_max_block_size, ctx.enable_progress_bars
    ctx.target_max_block_size, ctx.enable_progress_bars = 1, False
    try:
        with warnings.catch_warnings():  # "only received 1 input(s)": true, and expected
            warnings.filterwarnings("ignore", "The (maximum|minimum) number of concurrent")
            yield
    finally:
        ctx.target_max_block_size, ctx.enable_progress_bars = saved


def default_actors(threads: int) -> int:
    """As many actors as the cluster's CPUs hold at ``threads`` CPUs each."""
    import ray

    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return max(1, int(resources.get("CPU", 1)) // threads)


def pool(cls: type, task: EmbedTask, actors: int | None, batch_size: int) -> dict[str, Any]:
    """``map_batches`` arguments of an actor pool of ``cls`` running ``task``."""
    import ray.data

    threads = task.model.threads or 1
    size = actors or default_actors(threads)
    return {"fn": cls, "fn_constructor_kwargs": {"task": task}, "batch_size": batch_size,
            "batch_format": "pyarrow", "compute": ray.data.ActorPoolStrategy(size=size),
            "num_cpus": threads, **retries()}


def embed_dataset(
    dataset: Dataset,
    *,
    model: str = DEFAULT_MODEL,
    variant: str | None = None,
    dimensions: int = 768,
    text_field: str = "text",
    id_field: str = "id",
    title_field: str | None = None,
    keep: Sequence[str] = (),
    task: str | None = None,
    prompt: str | None = None,
    precision: str = "float32",
    ranges: Ranges | None = None,
    on_error: str = "error",
    on_long: str = "truncate",
    actors: int | None = None,
    threads: int = 1,
    providers: str | None = None,
    batch_rows: int = 256,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    max_length: int = MAX_LENGTH,
    variants_repo: str | None = None,
    revision: str | None = None,
) -> Dataset:
    """Embed ``dataset`` lazily: rows ``id``, the ``keep`` fields, ``embedding``.

    The output schema is the CLI's (:class:`~embgemma_plugins.jobs.output.Layout`);
    ids are strings.  Without ``task``/``prompt`` the document prompt is used, with
    the title when ``title_field`` is set.  ``on_error="skip"`` drops rows whose
    fields are unusable.  ``int8``/``uint8`` need calibration ``ranges``
    (:func:`~embgemma_plugins.jobs.quantise.calibrate` on a sample).  Each actor
    holds one session with ``threads`` threads; ``actors`` defaults to filling the
    cluster.  ``variants_repo``/``revision``: a repository of prebuilt variants, as
    :class:`~embgemma_plugins.EmbeddingGemma` takes them; an actor whose machine lacks the
    variant gets it from there or from the driver, never by a build (``ray/ship.py``).
    Call ``.write_parquet(...)`` or iterate the result to run it.
    """
    require_ray()
    if not id_field:
        raise InvalidArgumentError("id_field is required: a Dataset's rows have no numbers")
    spec = FieldSpec(text_field, id_field, title_field, tuple(keep))
    for problem in spec.check():
        raise InvalidArgumentError(problem)
    check_dimensions(dimensions)
    check_precision(precision)
    if precision in CALIBRATED and ranges is None:
        raise InvalidArgumentError(f"precision {precision} needs calibration ranges=")
    if on_error not in ("error", "skip") or on_long not in LONG_POLICIES:
        raise InvalidArgumentError("on_error is 'error' or 'skip'; on_long 'truncate', "
                                   "'error', 'mean' or 'late'")
    if title_field and (task or prompt):
        raise InvalidArgumentError("title_field builds the document prompt; drop task/prompt")
    info = ModelInfo.resolve(model, variant, variants_repo, revision)
    chosen = info.prompt_for(task or ("document" if prompt is None else None), prompt)
    spec_ = ModelSettings(info.model, variant, dimensions, providers, threads, max_length,
                          batch_tokens, build_missing=False,
                          variants_repo=variants_repo_of(variants_repo) or "", revision=revision)
    job = EmbedTask(spec_, Layout(spec, dimensions, precision), chosen, bool(title_field),
                    on_error, on_long, ranges, ship=shipment(info.files))
    return dataset.map_batches(**pool(RowEmbedder, job, actors, batch_rows))


def chunk_dataset(source: Source, spans: Sequence[Span], task: EmbedTask, actors: int | None,
                  lo: int = 0, hi: int | None = None) -> Dataset:
    """The CLI's pipeline: spans -> read tasks -> chunks -> embedding actors -> stats rows."""
    import ray.data

    rows = [{"span": pickle.dumps(s)} for s in spans]
    spread: Dataset = ray.data.from_items(rows, override_num_blocks=max(1, len(rows)))
    # Reading is light next to embedding; it takes no CPU from the actors' reservation
    # (which may be every CPU) and at most one task per actor runs at a time.
    size = actors or default_actors(task.model.threads or 1)
    reader: Any = _read_spans
    ds = spread.map_batches(reader, fn_kwargs={"source": source, "lo": lo, "hi": hi},
                        batch_size=1, batch_format="pyarrow", num_cpus=0,
                        compute=ray.data.TaskPoolStrategy(size=max(2, size)))
    return ds.map_batches(**pool(ChunkEmbedder, task, actors, 1))


def _read_spans(batch: pa.Table, source: Source, lo: int, hi: int | None
                ) -> Iterator[pa.Table]:
    for blob in batch.column("span").to_pylist():
        for index, items in read(source, pickle.loads(blob), lo, hi):
            yield pa.table({"chunk": pa.array([index], pa.int64()),
                            "items": pa.array([pickle.dumps(items)], pa.binary())})
