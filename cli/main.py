"""The ``embgemma`` command group.

Each command lives in its own module and only calls the core; heavy imports happen
inside commands so ``embgemma --help`` is instant and needs no export extra.
"""

from __future__ import annotations

import click

from embgemma_plugins import __version__

from .bench_cmd import bench
from .embed_cmd import embed
from .export_cmd import export
from .pull_cmd import pull
from .search_cmd import search
from .serve_cmd import serve
from .store_cmds import info, models, tasks


class Embgemma(click.Group):
    """The command group; Ctrl-C anywhere in a command exits 130, like a shell's."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("embgemma: interrupted", err=True)
            raise SystemExit(130) from None


@click.group(cls=Embgemma, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="embgemma")
def cli() -> None:
    """EmbeddingGemma on ONNX Runtime: embed files, build and list model variants.

    \b
    Examples:
      embgemma embed examples/sample.jsonl sample.parquet --id-field id --title-field title
      embgemma search sample.parquet "tool to benchmark a DNS server"
      embgemma export --variant fp32
      embgemma pull myorg/embeddinggemma-variants
      embgemma models
      embgemma tasks
      embgemma info
    """


for command in (embed, search, export, pull, models, tasks, info, bench, serve):
    cli.add_command(command)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
