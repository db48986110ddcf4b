"""``embgemma bench``: the benchmark's quick form on the user's own machine.

The harness lives in :mod:`embgemma_plugins.bench`; this command only picks a
plan and prints the table, so the numbers it shows are the ones docs/benchmarks.md
is made of, measured the same way.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from embgemma_plugins.store import registry
from embgemma_plugins.store.layout import DEFAULT_MODEL


@click.command()
@click.option("--model", default=DEFAULT_MODEL, show_default=True,
              help="Hub id or local model folder.")
@click.option("--variant", "variants", multiple=True, type=click.Choice(registry.variants()),
              help="Variant to measure (repeatable; default: every variant in the store).")
@click.option("--dimensions", "--dim", "dims", multiple=True,
              type=click.Choice(["768", "512", "256", "128"]),
              help="Matryoshka dimensions (repeatable; default 768, or 768 and 256 with --full).")
@click.option("--docs", type=click.IntRange(min=1),
              help="Documents to embed (default 96; all 660 with --full).")
@click.option("--queries", type=click.IntRange(min=1),
              help="Single queries to time (default 50; all 126 with --full).")
@click.option("--threads", type=click.IntRange(min=1), help="Threads for every runtime.")
@click.option("--st-model", help="sentence-transformers checkpoint (default: --model).")
@click.option("--no-st", is_flag=True,
              help="Skip sentence-transformers (no ratios; needed without the export extra).")
@click.option("--full", is_flag=True,
              help="The full benchmark (all texts, 768 and 256 dims, CLI peak RSS): ~40 min.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a Markdown report here (and a PNG plot next to it).")
def bench(variants: tuple[str, ...], dims: tuple[str, ...], docs: int | None,
          queries: int | None, threads: int | None, st_model: str | None, no_st: bool,
          full: bool, out: Path | None, model: str) -> None:
    """Measure throughput, query latency, load time and memory here, against
    sentence-transformers in the same run (each runtime in its own process).

    Takes a few minutes; missing variants are skipped with a line saying how to
    build them. Close other heavy programs first: the figures are only as quiet
    as the machine.

    \b
    Examples:
      embgemma bench
      embgemma bench --variant int8 --dim 256
      embgemma bench --no-st --threads 4
      embgemma bench --full --out benchmarks.md
    """
    from embgemma_plugins.bench import report
    from embgemma_plugins.bench.run import QUICK, Plan, run

    plan = Plan() if full else QUICK
    plan = replace(plan, model=model, st_model=st_model, threads=threads, include_st=not no_st,
                   variants=variants or plan.variants,
                   dims=tuple(int(d) for d in dims) or plan.dims,
                   docs=docs or plan.docs, queries=queries or plan.queries)
    outcome = run(plan, log=lambda s: click.echo(s, err=True))
    click.echo(report.text_table(outcome))
    if out:
        report.write(outcome, out)
        click.echo(f"wrote {out}", err=True)
    if not outcome.rows:
        raise click.ClickException("nothing was measured (see the lines above)")
