"""``embgemma search``: query a Parquet file that ``embgemma embed`` wrote.

The file's own metadata says which model, variant and dimensions made its vectors,
so the query is embedded the same way (with the query prompt) and ranked by
cosine.  Rows are streamed in record batches with a running top-k, so files larger
than memory work too.
"""

from __future__ import annotations

import heapq
from pathlib import Path
from typing import Any

import click
import numpy as np

from embgemma_plugins.errors import EmbeddingGemmaError
from embgemma_plugins.jobs.output import read_metadata


def _top_k(path: Path, query: np.ndarray, k: int) -> list[tuple[float, dict[str, Any]]]:
    import pyarrow.parquet as pq

    best: list[tuple[float, int, dict[str, Any]]] = []
    seen = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        table = batch.to_pydict()
        flat = batch.column("embedding").flatten().to_numpy(zero_copy_only=False)
        scores = flat.reshape(batch.num_rows, -1) @ query
        for row in np.argsort(-scores)[:k]:
            item = (
                float(scores[row]),
                -(seen + int(row)),
                {c: v[row] for c, v in table.items() if c != "embedding"},
            )
            if len(best) < k:
                heapq.heappush(best, item)
            else:
                heapq.heappushpop(best, item)
        seen += batch.num_rows
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

    The query is embedded by the model, variant and dimensions recorded in FILE,
    with the prompt of --task; rows are ranked by cosine similarity.

    \b
    Examples:
      embgemma search sample.parquet "tool to benchmark a DNS server"
      embgemma search docs.parquet "how do I rotate logs?" --top 10
    """
    meta = read_metadata(file)
    if not meta:
        raise click.UsageError(f"{file} has no embgemma metadata: write it with `embgemma embed`")
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
    for rank, (score, fields) in enumerate(_top_k(file, vector, top), 1):
        shown = "  ".join(f"{k}={str(v)[:70]!s}" for k, v in fields.items() if v is not None)
        click.echo(f"{rank:>3}  {score:.4f}  {shown}")
