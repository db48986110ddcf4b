"""The CLI as a user runs it: a separate Python process (so kills and peak memory are real)."""

from __future__ import annotations

import sys
from pathlib import Path

CLI = [sys.executable, "-m", "embgemma_plugins.cli.main"]


def embed_command(src: Path, out: Path, *options: str) -> list[str]:
    """``embgemma embed SRC OUT OPTIONS...`` as a subprocess argument list."""
    return [*CLI, "embed", str(src), str(out), *options]
