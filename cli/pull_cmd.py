"""``embgemma pull ORG/NAME``: install a prebuilt variant from a hub repository."""

from __future__ import annotations

import click

from embgemma_plugins.errors import EmbeddingGemmaError, InvalidArgumentError
from embgemma_plugins.store.registry import variants

from .store_cmds import fidelity_text, human_size


@click.command()
@click.argument("repo", metavar="ORG/NAME")
@click.option("--variant", type=click.Choice(variants()),
              help="Variant to install [default: the default variant, or the one at the "
              "repository's root].")
@click.option("--revision", help="Commit, branch or tag of the repository [default: main].")
def pull(repo: str, variant: str | None, revision: str | None) -> None:
    """Install a prebuilt variant from the hub repository ORG/NAME into the model store.

    The repository holds variant folders as `embgemma export --out` writes them, at its
    root or in subfolders named by variant (int8/, int4/, fp32/). Files come through the
    Hugging Face cache (HF_HUB_OFFLINE=1: the cache only) and each is checked against the
    variant's manifest.json before it is installed; files found damaged in the cache are
    downloaded again. Needs neither torch nor the export extra. Prints the folder.

    \b
    Examples:
      embgemma pull myorg/embeddinggemma-variants
      embgemma pull myorg/embeddinggemma-variants --variant int4 --revision v1
      embgemma embed docs.jsonl docs.parquet --model myorg/embeddinggemma-variants
      EMBGEMMA_VARIANTS_REPO=myorg/embeddinggemma-variants embgemma embed docs.jsonl out.parquet
    """
    if repo.count("/") != 1 or repo.startswith((".", "/", "~")):
        raise click.UsageError(f"ORG/NAME must be a hub repository id, got {repo!r}")
    from embgemma_plugins.store.layout import StoredVariant
    from embgemma_plugins.store.manifest import Manifest
    from embgemma_plugins.store.prebuilt import pull as pull_variant

    try:
        folder = pull_variant(repo, variant, revision)
    except InvalidArgumentError as e:
        raise click.UsageError(str(e)) from e
    except EmbeddingGemmaError as e:
        raise click.ClickException(str(e)) from e
    manifest = Manifest.read(folder)
    size = human_size(StoredVariant(folder, manifest).size_bytes)
    click.echo(f"embgemma: {manifest.variant} variant of {manifest.model_id} from {repo}, "
               f"{size}, {fidelity_text(manifest.fidelity)}; use it with --model {repo} "
               f"--variant {manifest.variant}", err=True)
    click.echo(str(folder))
