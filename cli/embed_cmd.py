"""``embgemma embed IN OUT``: the options; the work is in :mod:`.embed_run`."""

from __future__ import annotations

from pathlib import Path

import click

from embgemma_plugins.batching import DEFAULT_BATCH_TOKENS
from embgemma_plugins.jobs.longtext import LONG_POLICIES
from embgemma_plugins.jobs.plan import CHUNK_ROWS, ENGINES
from embgemma_plugins.jobs.quantise import PRECISIONS
from embgemma_plugins.jobs.readers import FORMATS
from embgemma_plugins.maths import DIMENSIONS
from embgemma_plugins.store.layout import DEFAULT_MODEL
from embgemma_plugins.store.registry import variants

from .embed_run import execute


@click.command()
@click.argument("input_path", metavar="IN", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("out", metavar="OUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="Input format (default: from IN's extension; required for stdin).")
@click.option("--text-field", default="text", show_default=True, help="Field holding the text.")
@click.option("--id-field", help="Field holding the id (default: the row number, from 0).")
@click.option("--title-field",
              help="Field holding a title: rows are embedded as 'title: {title} | text: ...'.")
@click.option("--keep", multiple=True, metavar="FIELD",
              help="Copy FIELD into the output (repeatable).")
@click.option("--model", default=DEFAULT_MODEL, show_default=True,
              help="Hub id or local model folder.")
@click.option("--variant", type=click.Choice(variants()),
              help="Model variant (default: the store default).")
@click.option("--variants-repo", metavar="ORG/NAME",
              help="Hub repository of prebuilt variants to fetch a missing variant from "
              "before building it (default: $EMBGEMMA_VARIANTS_REPO; docs/publishing.md).")
@click.option("--revision", help="Commit, branch or tag of that repository (or of --model).")
@click.option("--dimensions", "--dim", "dim", type=click.Choice([str(d) for d in DIMENSIONS]),
              default="768", show_default=True, help="Matryoshka dimensions.")
@click.option("--task", help="Prompt of this task (see `embgemma tasks`; default: document).")
@click.option("--prompt", help="An explicit prompt string instead of --task.")
@click.option("--provider", default="auto", show_default=True,
              help="auto, cpu, cuda, or any ONNX Runtime provider name.")
@click.option("--threads", type=click.IntRange(min=1),
              help="ONNX Runtime intra-op threads (with --engine ray: per actor, default 1).")
@click.option("--batch-tokens", type=click.IntRange(min=1), default=DEFAULT_BATCH_TOKENS,
              show_default=True, help="Padded tokens per batch (bounds memory per batch).")
@click.option("--max-length", type=click.IntRange(3, 2048), default=2048, show_default=True,
              help="Tokens per text, prompt included; longer texts are truncated.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="float32", show_default=True,
              help="Stored embedding type; int8/uint8 are calibrated on the first chunk.")
@click.option("--on-error", type=click.Choice(["error", "skip"]), default="error",
              show_default=True, help="Bad rows: stop, or skip them into the rejects file.")
@click.option("--long", "--on-long", "on_long", type=click.Choice(LONG_POLICIES),
              default="truncate", show_default=True,
              help="Texts longer than --max-length: truncate (listed in the rejects file), "
                   "error (stop), mean (token-weighted mean of their chunks' vectors) or late "
                   "(late chunking: every token pooled).")
@click.option("--chunk-tokens", type=click.IntRange(11, 2048), metavar="N",
              help="One output row per chunk of each text: chunks of at most N tokens with "
                   "the prompt, cut at paragraphs, sentences, lines, words (columns id, "
                   "chunk, start, end: character offsets).")
@click.option("--chunk-overlap", type=click.IntRange(min=0), metavar="M",
              help="Tokens neighbouring chunks share (with --chunk-tokens; default 64, or "
                   "half of N when less).")
@click.option("--late", is_flag=True,
              help="Chunk vectors by late chunking: each text through the model once, each "
                   "chunk pooled from it (with --chunk-tokens).")
@click.option("--keep-text", is_flag=True,
              help="Write each chunk's text in a 'text' column (with --chunk-tokens).")
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path),
              help="Rows skipped by --on-error skip, and rows --long truncate cut "
                   "(default: OUT.rejects.jsonl).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run of the same command.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT.")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=CHUNK_ROWS, show_default=True,
              help="Rows per resumable chunk (a kill loses at most one chunk of work).")
@click.option("--engine", type=click.Choice(ENGINES), default="local",
              show_default=True, help="Run here, or on a Ray cluster (the `ray` extra).")
@click.option("--address", help="Ray cluster to join (default: RAY_ADDRESS, else start one).")
@click.option("--actors", type=click.IntRange(min=1),
              help="Ray actors, one model each (default: the cluster's CPUs / --threads).")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
@click.option("--progress-interval", type=float, default=None, hidden=True)
def embed(**options: object) -> None:
    """Embed the texts of IN (JSONL, CSV, Parquet or text; - for stdin) into OUT.

    OUT is Parquet (id, kept fields, embedding) with metadata recording the model,
    prompt and input, or .npy (embeddings only, metadata in OUT.npy.json; when rows were
    skipped, OUT.rows.npy gives each vector's input row). It appears only when the
    run completes; an interrupted run (even killed) continues with --resume and gives
    the same file as an uninterrupted one. One run at a time may write OUT.

    A bad row (malformed JSON, missing or non-string text, invalid UTF-8, ragged
    CSV row) stops the run with exit code 1 naming file, line and problem, keeping
    finished chunks for --resume; --on-error skip lists such rows in a rejects
    file instead. Blank lines are not rows. Kept fields are written as text
    (non-string JSON values as JSON). Progress goes to stderr.

    \b
    Examples:
      embgemma embed docs.jsonl docs.parquet
      embgemma embed docs.jsonl.gz docs.parquet --id-field id --title-field title --keep url
      embgemma embed docs.jsonl docs.parquet --resume
      embgemma embed pages.csv pages.parquet --dimensions 256 --precision int8 --on-error skip
      embgemma embed manuals.jsonl chunks.parquet --chunk-tokens 512 --late --keep-text
      embgemma embed manuals.jsonl docs.parquet --long mean
      cat lines.txt | embgemma embed - lines.npy --format text --task clustering
      embgemma embed queries.txt q.parquet --task query --provider cuda
      embgemma embed s3://bucket/docs.jsonl docs.parquet --engine ray --address auto
    """
    execute(options)
