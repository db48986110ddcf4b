"""``embgemma search``: query a file that ``embgemma embed`` wrote (Parquet or ``.npy``).

The file's own metadata (Parquet schema metadata, or the ``OUT.npy.json`` sidecar of a
``.npy``) says which model, variant and dimensions made its vectors, so the query is
embedded the same way (with the query prompt) and ranked by cosine.  Rows are streamed
in batches with a running top-k, so files larger than memory work too.  A ``.npy``
holds only vectors: its rows are shown by number (``row=N``, from 0).
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import click
import numpy as np

from embgemma_plugins.errors import EmbeddingGemmaError
from embgemma_plugins.jobs.finish import sidecar
from embgemma_plugins.jobs.output import read_metadata

Fields = Callable[[int], dict[str, Any]]
Batches = Iterator[tuple[np.ndarray, Fields]]
_MAGIC = {b"PAR1": "parquet", b"\x93NUMPY": "npy"}


def _kind(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(6)
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    raise click.UsageError(
        f"{path} is neither a Parquet file nor a .npy array: search reads what "
        "`embgemma embed` writes"
    )


def _parquet(path: Path) -> tuple[dict[str, Any], Callable[[], Batches]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = read_metadata(path)
    except (pa.ArrowException, OSError) as e:
        raise click.UsageError(f"{path} cannot be read as Parquet: {e}") from e

    def batches() -> Batches:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            table = batch.to_pydict()
            flat = batch.column("embedding").flatten().to_numpy(zero_copy_only=False)
            yield flat.reshape(batch.num_rows, -1), partial(_columns, table)

    return meta, batches


def _npy(path: Path) -> tuple[dict[str, Any], Callable[[], Batches]]:
    side = sidecar(path)
    if not side.is_file():
        raise click.UsageError(
            f"{path} has no {side.name} beside it: the sidecar `embgemma embed` writes with "
            "a .npy names the model that made the vectors"
        )
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
        array = np.load(path, mmap_mode="r")
    except ValueError as e:  # bad JSON, or a damaged .npy header
        raise click.UsageError(f"{path} or {side.name} cannot be read: {e}") from e
    if not isinstance(meta, dict):
        raise click.UsageError(f"{side} is not the metadata `embgemma embed` writes")
    rows = meta.get("rows", len(array))
    if array.ndim != 2 or rows != len(array):
        raise click.UsageError(
            f"{path} holds an array of shape {array.shape}, but {side.name} describes "
            f"{rows} rows: the two do not belong together"
        )

    if meta.get("id_field") or meta.get("skipped"):
        lost = [f"the values of --id-field {meta['id_field']}"] if meta.get("id_field") else []
        lost += [f"{meta['skipped']} skipped input rows"] if meta.get("skipped") else []
        click.echo(f"note: {path.name} keeps no ids ({' and '.join(lost)} are not in it): "
                   "row=N is its N-th vector, from 0; write .parquet to keep ids", err=True)

    def batches() -> Batches:
        for start in range(0, len(array), 65536):
            yield np.asarray(array[start : start + 65536]), partial(_row_number, start)

    return meta, batches


def _columns(table: dict[str, list[Any]], row: int) -> dict[str, Any]:
    return {c: v[row] for c, v in table.items() if c != "embedding"}


def _row_number(start: int, row: int) -> dict[str, Any]:
    return {"row": start + row}


def _top_k(batches: Batches, query: np.ndarray, k: int) -> list[tuple[float, dict[str, Any]]]:
    best: list[tuple[float, int, dict[str, Any]]] = []
    seen = 0
    for vectors, fields in batches:
        if vectors.shape[1:] != query.shape:
            raise click.UsageError(
                f"the file's vectors have {vectors.shape[1]} components, its metadata says "
                f"{len(query)} dimensions"
            )
        scores = vectors @ query
        for row in np.argsort(-scores)[:k]:
            item = (float(scores[row]), -(seen + int(row)), fields(int(row)))
            if len(best) < k:
                heapq.heappush(best, item)
            else:
                heapq.heappushpop(best, item)
        seen += len(vectors)
    return [(score, fields) for score, _, fields in sorted(best, reverse=True)]


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("query")
@click.option(
    "--top",
    "-k",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many rows to show.",
)
@click.option(
    "--task",
    default="query",
    show_default=True,
    help="Task whose prompt the query gets (see `embgemma tasks`).",
)
def search(file: Path, query: str, top: int, task: str) -> None:
    """Rank the rows of FILE (written by `embgemma embed`) against QUERY.

    The query is embedded by the model, variant and dimensions recorded in FILE
    (Parquet metadata, or the FILE.json sidecar of a .npy), with the prompt of
    --task; rows are ranked by cosine similarity. A .npy keeps no ids or fields:
    its rows are shown as row=N (from 0, in the order written).

    \b
    Examples:
      embgemma search sample.parquet "tool to benchmark a DNS server"
      embgemma search docs.parquet "how do I rotate logs?" --top 10
      embgemma search lines.npy "disk usage" --top 3
    """
    meta, batches = (_npy if _kind(file) == "npy" else _parquet)(file)
    if not meta:
        raise click.UsageError(f"{file} has no embgemma metadata: write it with `embgemma embed`")
    missing = [k for k in ("model", "variant", "dimensions", "max_length") if k not in meta]
    if missing:
        raise click.UsageError(f"{file}: its embgemma metadata lacks {', '.join(missing)}")
    if meta.get("precision", "float32") != "float32":
        raise click.UsageError(
            f"{file} holds {meta['precision']} embeddings; search needs float32 "
            "(embed without --precision)"
        )
    from embgemma_plugins import EmbeddingGemma

    try:
        model = EmbeddingGemma(
            meta["model"],
            variant=meta["variant"],
            dimensions=meta["dimensions"],
            max_length=meta["max_length"],
        )
        vector = model.embed([query], task=task)[0]
    except EmbeddingGemmaError as e:
        raise click.ClickException(str(e)) from e
    manifest = model.files.manifest
    found = manifest.files.get("model.onnx") if manifest else None
    if meta.get("onnx_sha256") and found and found != meta["onnx_sha256"]:
        click.echo(
            f"warning: {model.files.onnx} is not the graph that embedded {file} "
            "(its sha256 differs); scores may be off",
            err=True,
        )
    for rank, (score, fields) in enumerate(_top_k(batches(), vector, top), 1):
        shown = "  ".join(f"{k}={str(v)[:70]!s}" for k, v in fields.items() if v is not None)
        click.echo(f"{rank:>3}  {score:.4f}  {shown}")
