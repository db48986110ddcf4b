"""docs/cli.md, rendered from the commands' own ``--help`` (scripts/gen_cli_docs.py)."""

from __future__ import annotations

import click

HEADER = """# The `embgemma` command line

Generated from `--help` by `python scripts/gen_cli_docs.py`; do not edit by hand
(`tests/test_cli_docs.py` fails when this file is stale).
"""


def help_text(command: click.Command, name: str, parent: click.Context | None = None) -> str:
    ctx = click.Context(command, info_name=name, parent=parent, terminal_width=100,
                        max_content_width=100, help_option_names=["-h", "--help"])
    return command.get_help(ctx)


def render() -> str:
    from embgemma_plugins.cli.main import cli

    root = click.Context(cli, info_name="embgemma", terminal_width=100, max_content_width=100,
                         help_option_names=["-h", "--help"])
    sections = [HEADER, "## embgemma\n", "```\n" + help_text(cli, "embgemma") + "\n```\n"]
    for name in sorted(cli.commands):
        text = help_text(cli.commands[name], name, root)
        sections += [f"## embgemma {name}\n", "```\n" + text + "\n```\n"]
    return "\n".join(sections)
