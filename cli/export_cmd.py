"""``embgemma export``: build a model variant folder with Optimum."""

from __future__ import annotations

from pathlib import Path

import click

from embgemma_plugins.errors import EmbeddingGemmaError
from embgemma_plugins.store.layout import DEFAULT_MODEL
from embgemma_plugins.store.registry import default_variant, variants


@click.command()
@click.option(
    "--model",
    default=DEFAULT_MODEL,
    show_default=True,
    help="Hub id or local sentence-transformers checkpoint folder.",
)
@click.option(
    "--variant", type=click.Choice(variants()), default=default_variant(), show_default=True
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the variant folder here instead of the model store.",
)
@click.option(
    "--allow-below-bar",
    is_flag=True,
    help="Install the variant even if its measured fidelity misses its bar.",
)
@click.option(
    "--fidelity-corpus",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="JSONL(.gz) of records with 'text' and 'kind' (query or document) to measure "
    "fidelity on [default: the packaged corpus of real text].",
)
@click.option("-v", "--verbose", is_flag=True,
              help="Show the output and warnings of torch, transformers and the exporter.")
def export(
    model: str,
    variant: str,
    out: Path | None,
    allow_below_bar: bool,
    fidelity_corpus: Path | None,
    verbose: bool,
) -> None:
    """Export MODEL to ONNX with Optimum, build a variant, measure its fidelity.

    The variant is compared with sentence-transformers (fp32) on a corpus of real
    text; the figures go into its manifest.json, and a variant that misses its bar
    is not installed (unless --allow-below-bar). Each step prints its progress on
    stderr (docs/variants.md lists each variant's build time and memory). --out
    writes a portable variant folder: publish it in a hub repository, and machines
    use it with no build (`embgemma pull`, docs/publishing.md).

    \b
    Examples:
      embgemma export --variant int8
      embgemma export --model ./my-finetuned-checkpoint --variant fp32 --out ./fp32
      embgemma export --variant int4 --fidelity-corpus my-queries-and-docs.jsonl
      embgemma export --variant int8 --out variants/int8   # then: hf upload ORG/NAME variants
    """
    from embgemma_plugins.store.resolve import export_available

    if not export_available():
        raise click.ClickException(
            "export needs torch, transformers and optimum-onnx: "
            "pip install 'embgemma-plugins[export]'"
        )
    from embgemma_plugins.onnx_models.export import export_variant
    from embgemma_plugins.onnx_models.fidelity import CORPUS

    try:
        folder = export_variant(
            model,
            variant,
            out,
            allow_below_bar=allow_below_bar,
            corpus=fidelity_corpus or CORPUS,
            verbose=verbose,
        )
    except EmbeddingGemmaError as e:
        raise click.ClickException(str(e)) from e
    click.echo(str(folder))
