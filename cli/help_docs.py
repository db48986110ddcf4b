"""docs/cli.md, rendered from the commands' own ``--help`` (scripts/gen_cli_docs.py)."""

from __future__ import annotations

import click

HEADER = """# The `embgemma` command line

The main job: embed a file of documents into Parquet, here the sample shipped in
the repository (40 Debian package descriptions with `id`, `title` and `text`):

```sh
embgemma embed examples/sample.jsonl sample.parquet --id-field id --title-field title --keep title
python -c "import pyarrow.parquet as pq; print(pq.read_table('sample.parquet'))"
```

`sample.parquet` has columns `id`, `title` and `embedding`
(`fixed_size_list<float32>[768]`); its schema metadata key `embgemma` records the
model, revision, variant, dimensions, prompt, precision (and int8/uint8
calibration), package version, input file and row counts.  The file appears only
when the run completes: kill it at any moment and rerun the same command with
`--resume` to get the identical file.  While it runs, `.sample.parquet.embgemma-work/`
holds one part per finished chunk of `--chunk-rows` rows.

Exit codes (every command): 0 done; 1 a failure, told in one sentence naming what
failed, what was kept and how to go on (a bad input row, a full disk, a damaged model,
another run writing the same OUT); 2 misuse (an unknown option value, an existing OUT
or rejects file without `--overwrite`, `--rejects` naming the input); 130 interrupted
(Ctrl-C or SIGTERM, at any moment, start-up included).  See docs/reliability.md.

The rest of this page is generated from `--help` by `python scripts/gen_cli_docs.py`;
do not edit it by hand (`tests/test_cli_docs.py` fails when it is stale).
"""


def help_text(command: click.Command, name: str, parent: click.Context | None = None) -> str:
    ctx = click.Context(command, info_name=name, parent=parent, terminal_width=100,
                        max_content_width=100, help_option_names=["-h", "--help"])
    return command.get_help(ctx)


def render() -> str:
    from .main import cli

    root = click.Context(cli, info_name="embgemma", terminal_width=100, max_content_width=100,
                         help_option_names=["-h", "--help"])
    sections = [HEADER, "## embgemma\n", "```\n" + help_text(cli, "embgemma") + "\n```\n"]
    for name in sorted(cli.commands):
        text = help_text(cli.commands[name], name, root)
        sections += [f"## embgemma {name}\n", "```\n" + text + "\n```\n"]
    return "\n".join(sections)
