"""The runtime never imports torch or transformers, nor a framework until it is used."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "torch",
    "transformers",
    "optimum",
    "sentence_transformers",
    "langchain_core",
    "llama_index",
    "llm",
)


def test_import_loads_no_heavy_package():
    code = (
        "import sys, embgemma_plugins\n"
        "from embgemma_plugins import EmbeddingGemma\n"
        "import embgemma_plugins.cli.main\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {HEAVY!r}]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_embedding_loads_no_heavy_package(tiny_model):
    code = (
        "import sys\n"
        "from embgemma_plugins import EmbeddingGemma\n"
        f"m = EmbeddingGemma({str(tiny_model)!r})\n"
        "m.embed_queries(['hello']); m.embed_documents(['x'], titles=['t'])\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {HEAVY!r}]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
