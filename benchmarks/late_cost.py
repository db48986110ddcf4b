"""What the ``token_states`` output costs a variant that carries it, measured A/B.

Copies a variant folder, prunes ``token_states`` (and the head MatMul that only it uses)
from the copy's graph, and times the two folders interleaved in one process with
``benchmarks.ab_throughput`` (A: without the output, B: with it): the benchmark documents,
then 2,048-token documents. The copy has no manifest (its graph differs from the one the
manifest hashes), so it is loaded as a plain folder::

    flock /tmp/heavy.lock python -m benchmarks.late_cost \
        ~/.cache/embgemma-plugins/google--embeddinggemma-300m/int8
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks import ab_throughput


def without_token_states(folder: Path, out: Path) -> Path:
    """``folder`` copied to ``out`` with the ``token_states`` output pruned."""
    from embgemma_plugins.onnx_models import graph as G

    shutil.copytree(folder, out, ignore=shutil.ignore_patterns("manifest.json", "*.scratch*"))
    model = G.load(out / "model.onnx")
    G.keep_outputs(model, [G.SENTENCE_OUTPUT])
    G.save(model, out / "model.onnx")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("variant", type=Path, help="a variant folder built with token_states")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--long", type=int, default=12, help="2,048-token documents in the 2nd A/B")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="late-cost-") as tmp:
        plain = without_token_states(args.variant, Path(tmp) / args.variant.name)
        common = [str(plain), str(args.variant), "--rounds", str(args.rounds)]
        print("benchmark documents (A: without token_states, B: with):", flush=True)
        ab_throughput.main(common)
        print(f"{args.long} documents of 2,048 tokens:", flush=True)
        ab_throughput.main([*common, "--long", str(args.long)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
