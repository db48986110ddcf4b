"""Write docs/cli.md from the CLI's --help texts (``--check``: fail if it is stale)."""

from __future__ import annotations

import sys
from pathlib import Path

from embgemma_plugins.cli.help_docs import render

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if not DOC.is_file() or DOC.read_text(encoding="utf-8") != text:
            print(f"{DOC} is stale: run python scripts/gen_cli_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
