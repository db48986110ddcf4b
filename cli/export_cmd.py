"""``embgemma export``: build a model variant folder with Optimum."""

from __future__ import annotations

from pathlib import Path

import click

from embgemma_plugins.errors import EmbeddingGemmaError
from embgemma_plugins.onnx_models.store import DEFAULT_MODEL, VARIANTS


@click.command()
@click.option(
    "--model",
    default=DEFAULT_MODEL,
    show_default=True,
    help="Hub id or local sentence-transformers checkpoint folder.",
)
@click.option("--variant", type=click.Choice(VARIANTS), default="fp32", show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the variant folder here instead of the model store.",
)
def export(model: str, variant: str, out: Path | None) -> None:
    """Export MODEL to ONNX with Optimum and build a variant folder.

    \b
    Examples:
      embgemma export --variant fp32
      embgemma export --model ./my-finetuned-checkpoint --variant fp32 --out ./fp32
    """
    from embgemma_plugins.resolve import export_available

    if not export_available():
        raise click.ClickException(
            "export needs torch, transformers and optimum-onnx: "
            "pip install 'embgemma-plugins[export]'"
        )
    from embgemma_plugins.onnx_models.export import export_variant

    try:
        folder = export_variant(model, variant, out)
    except EmbeddingGemmaError as e:
        raise click.ClickException(str(e)) from e
    click.echo(str(folder))
