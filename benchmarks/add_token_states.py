"""Copy a built variant and add the ``token_states`` output to the copy's final graph.

The developer's shortcut for measuring a variant built before the recipes listed
``token_states`` without rebuilding it (an int8 build takes 50 minutes): the same pass the
build runs (``onnx_models/token_states.py``) applied to the finished graph, whose Dense
head is still one fp32 MatMul in the fp32 and int8 recipes. The copy's manifest records
the new files and output; its fidelity figures are the original's (the sentence vectors
do not change: the new MatMul only adds an output). Not for int4, whose head is 8-bit::

    python -m benchmarks.add_token_states \\
        ~/.cache/embgemma-plugins/google--embeddinggemma-300m/int8 \\
        /work/store-x/google--embeddinggemma-300m/int8
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    from embgemma_plugins.onnx_models import graph as G
    from embgemma_plugins.onnx_models.token_states import add_token_states
    from embgemma_plugins.session import TOKEN_STATES
    from embgemma_plugins.store.manifest import Manifest

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path)
    p.add_argument("target", type=Path)
    args = p.parse_args(argv)
    shutil.copytree(args.source, args.target, ignore=shutil.ignore_patterns("*.scratch*"))
    model = G.load(args.target / "model.onnx")
    add_token_states(model)
    G.save(model, args.target / "model.onnx")
    manifest = Manifest.read(args.target)
    outputs = [o for o in manifest.recipe.get("outputs", []) if o != TOKEN_STATES]
    manifest.recipe["outputs"] = [*outputs, TOKEN_STATES]
    manifest.build = {**manifest.build, "token_states_added_by": "benchmarks.add_token_states"}
    manifest.record_files(args.target)
    manifest.write(args.target)
    print(f"{args.target}: outputs {[o.name for o in model.graph.output]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
