"""What a run loads: the libraries it does not need stay out of its resident memory.

pyarrow (32 MB resident at import) is needed only to assemble a Parquet output, which
happens after the model is dropped; huggingface_hub with requests (18 MB) only
when a model is not already in the store. Each check runs a real process, since a
test process has imported everything already.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np

from embgemma_plugins.store.layout import variant_dir

FIRST_IMPORT = """
import json, sys, traceback
first = {}
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name in ("pyarrow", "huggingface_hub", "requests") and name not in first:
            first[name] = [f.name for f in traceback.extract_stack()]
        return None
sys.meta_path.insert(0, Watch())
try:
    exec(sys.argv[1])
finally:
    print("FIRST_IMPORTS", json.dumps(first))
"""

CLI_RUN = """
from embgemma_plugins.cli.main import cli
cli.main(sys.argv[2:], prog_name="embgemma", standalone_mode=False)
"""


def first_imports(code: str, *args: str, env: dict[str, str] | None = None) -> dict[str, list]:
    """Run ``code`` in a fresh interpreter; the call stack at each watched first import."""
    done = subprocess.run([sys.executable, "-c", FIRST_IMPORT, code, *args],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("FIRST_IMPORTS"))
    return dict(json.loads(line.split(" ", 1)[1]))


def test_embedding_loads_pyarrow_only_to_assemble_a_parquet_output(tmp_path, tiny_model):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"d{i}", "text": f"text number {i}", "k": str(i)})
                           + "\n" for i in range(40)))
    out = tmp_path / "out.parquet"
    seen = first_imports(CLI_RUN, "embed", str(src), str(out), "--model", str(tiny_model),
                         "--id-field", "id", "--keep", "k", "--chunk-rows", "16", "-q")
    assert "write_parquet" in seen["pyarrow"], seen["pyarrow"]
    assert "run" not in seen["pyarrow"]  # not while chunks are embedded (jobs/job.py)
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    assert table.column("id").to_pylist() == [f"d{i}" for i in range(40)]
    assert table.column("k").to_pylist() == [str(i) for i in range(40)]
    assert len(table.column("embedding")[0]) == 768


def test_a_npy_output_never_loads_pyarrow(tmp_path, tiny_model):
    src = tmp_path / "in.txt"
    src.write_text("".join(f"line {i}\n" for i in range(20)))
    out = tmp_path / "out.npy"
    seen = first_imports(CLI_RUN, "embed", str(src), str(out), "--model", str(tiny_model),
                         "--dim", "256", "--precision", "uint8", "-q")
    assert "pyarrow" not in seen
    vectors = np.load(out)
    assert vectors.shape == (20, 256) and vectors.dtype == np.uint8


def test_a_stored_variant_loads_without_the_hub_client(tmp_path, tiny_model):
    root = tmp_path / "home"
    shutil.copytree(tiny_model, variant_dir("acme/tiny-gemma", "fp32", root))
    env = {**os.environ, "EMBGEMMA_HOME": str(root)}
    code = ("from embgemma_plugins import EmbeddingGemma\n"
            "m = EmbeddingGemma('acme/tiny-gemma', variant='fp32')\n"
            "assert m.embed_queries(['hello']).shape == (1, 768)\n")
    assert first_imports(code, env=env) == {}
