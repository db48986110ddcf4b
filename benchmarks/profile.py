"""Where the time goes: ONNX Runtime's per-node profile summarised by operator type.

A missed speed target needs the profile that explains it (kernel time in int8
MatMuls versus unfused element-wise work, say), so this embeds benchmark documents
through the real runtime with ORT profiling on and prints each operator type's
share of kernel time::

    python -m benchmarks.profile --variant int8 --docs 48
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from embgemma_plugins.bench import corpus
from embgemma_plugins.store.layout import DEFAULT_MODEL
from embgemma_plugins.store.registry import variants


def summarise(trace: list[dict[str, object]]) -> list[tuple[str, float, int]]:
    """(operator type, share of kernel time, node runs), largest share first."""
    total: dict[str, float] = defaultdict(float)
    runs: dict[str, int] = defaultdict(int)
    for event in trace:
        args = event.get("args")
        if event.get("cat") != "Node" or not isinstance(args, dict) or "op_name" not in args:
            continue
        if not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        op = str(args["op_name"])
        total[op] += float(event.get("dur", 0))  # type: ignore[arg-type]
        runs[op] += 1
    whole = sum(total.values()) or 1.0
    return sorted(((op, t / whole, runs[op]) for op, t in total.items()), key=lambda x: -x[1])


def profile(model: str, variant: str | None, docs: int, threads: int | None) -> list[
        tuple[str, float, int]]:
    """Embed ``docs`` benchmark documents with profiling on; the per-operator summary."""
    import onnxruntime as ort

    from embgemma_plugins import EmbeddingGemma
    from embgemma_plugins.session import session_options

    m = EmbeddingGemma(model, variant=variant, threads=threads, build_missing=False)
    with tempfile.TemporaryDirectory(prefix="embgemma-prof-") as tmp:
        opts = session_options(threads)
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "ort")
        m.session = ort.InferenceSession(str(m.files.onnx), sess_options=opts,
                                         providers=m.session.get_providers())
        m.embed_documents(corpus.documents(docs))
        trace = json.loads(Path(m.session.end_profiling()).read_text(encoding="utf-8"))
    return summarise(trace)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--variant", choices=variants())
    p.add_argument("--docs", type=int, default=48)
    p.add_argument("--threads", type=int)
    p.add_argument("--top", type=int, default=20)
    a = p.parse_args(argv)
    rows = profile(a.model, a.variant, a.docs, a.threads)
    print(f"{'operator':28s} {'share':>7s} {'runs':>7s}")
    for op, share, n in rows[: a.top]:
        print(f"{op:28s} {share:7.1%} {n:7d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
