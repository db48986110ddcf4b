"""Where a variant build's memory goes, step by step: this process's resident memory sampled
every 20 ms, and the peak of each step of ``onnx_models/build.py`` (its functions and every
graph pass wrapped with markers; investigation only, the build itself is unchanged).

The Optimum export is run once (in its child process) into ``--work`` and reused, so only
the build after it is measured; ``benchmarks.build_memory`` measures a whole first build::

    flock /tmp/heavy.lock python -m benchmarks.build_steps --variant int8 --out /tmp/int8
"""

from __future__ import annotations

import argparse
import functools
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil


class Steps:
    """The peak resident memory (MB) of each step, printed as each step ends."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.label, self.peak, self.start = "start", 0.0, time.monotonic()
        threading.Thread(target=self._sample, daemon=True).start()

    def rss(self) -> float:
        return float(self.proc.memory_info().rss) / 2**20

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.02)

    def enter(self, label: str) -> None:
        now = self.rss()
        print(f"{self.label:<32} {time.monotonic() - self.start:7.1f} s  peak {self.peak:7.0f} MB"
              f"  end {now:7.0f} MB", flush=True)
        self.label, self.peak, self.start = label, now, time.monotonic()

    def wrap(self, owner: Any, name: str, label: str | None = None) -> None:
        fn: Callable[..., Any] = getattr(owner, name)

        @functools.wraps(fn)
        def marked(*args: Any, **kwargs: Any) -> Any:
            self.enter(label or name)
            try:
                return fn(*args, **kwargs)
            finally:
                self.enter(f"after {label or name}")

        setattr(owner, name, marked)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", default="int8")
    p.add_argument("--out", type=Path, required=True, help="folder for the built graph")
    p.add_argument("--work", type=Path, default=Path("/tmp/embgemma-build-steps"),
                   help="the Optimum export, made once and reused")
    args = p.parse_args(argv)
    steps = Steps()
    from embgemma_plugins.onnx_models import build as B
    from embgemma_plugins.onnx_models.child import run
    from embgemma_plugins.onnx_models.export import MAX_LENGTH, TOKENIZER_FILE, calibration_texts
    from embgemma_plugins.onnx_models.passes import PASSES
    from embgemma_plugins.onnx_models.recipe import load_recipes
    from embgemma_plugins.store.checkpoint import resolve_checkpoint
    from embgemma_plugins.store.layout import DEFAULT_MODEL
    from embgemma_plugins.tokenizer import Tokenizer

    for name in ("calibrate", "smooth", "quantise_weights", "ort_optimize", "unpack_weights",
                 "park", "add_token_states", "share_head_weights"):
        steps.wrap(B, name)
    for name in ("load", "save", "fold_dense_head", "keep_outputs"):
        steps.wrap(B.G, name, f"graph.{name}")
    for name, step in PASSES.items():  # frozen dataclasses: replace their run in place
        object.__setattr__(step, "run", _marked(steps, f"pass {name}", step.run))
    checkpoint, _, _ = resolve_checkpoint(DEFAULT_MODEL)
    if not (args.work / "model.onnx").is_file():
        steps.enter("optimum export (child)")
        run("optimum", [str(checkpoint), str(args.work)])
    recipe = load_recipes()[args.variant]
    tokenizer = Tokenizer(checkpoint / TOKENIZER_FILE)

    def tokenize(texts: Sequence[str]) -> list[list[int]]:
        return [ids.tolist() for ids in tokenizer.encode(texts, MAX_LENGTH).ids]

    texts = calibration_texts(checkpoint, recipe.calibration_samples) if recipe.calibrated() \
        else None
    args.out.mkdir(parents=True, exist_ok=True)
    steps.enter("build_variant")
    B.build_variant(args.work / "model.onnx", args.out / "model.onnx", recipe, texts, tokenize)
    steps.enter("end")
    return 0


def _marked(steps: Steps, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def marked(*args: Any, **kwargs: Any) -> Any:
        steps.enter(label)
        return fn(*args, **kwargs)

    return marked


if __name__ == "__main__":
    sys.exit(main())
