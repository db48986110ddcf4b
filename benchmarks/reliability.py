"""What the reliability checks cost at load: store verification and the literal tokenizer.

For one variant folder (used read-only: verification stamps go to a temporary store):

- verification: the manifest's files hashed (a first use, or a changed file) against the
  usual load that only stats them and trusts the stamp, in-process and as whole
  ``EmbeddingGemma`` loads, each in a fresh process;
- tokenizer: loading ``Tokenizer`` (SentencePiece + :class:`~embgemma_plugins.literal.Literal`)
  against SentencePiece alone, and encoding the fidelity corpus with and without the
  check for protected strings;
- markup: the vectors of texts holding a protected string (``<td>``, ``<mask>``...) read as
  text against the same texts read with the tokens' ids, as sentence-transformers does::

    python -m benchmarks.reliability FOLDER [--rounds 5]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

LOAD = """
import time, sys
from embgemma_plugins import EmbeddingGemma
t = time.perf_counter()
m = EmbeddingGemma(sys.argv[1], build_missing=False, threads=1)
print(time.perf_counter() - t)
"""


def best(f: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Median and minimum seconds of ``rounds`` calls of ``f``."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def load_seconds(folder: Path, env: dict[str, str]) -> float:
    done = subprocess.run([sys.executable, "-c", LOAD, str(folder)], env=env, check=True,
                          capture_output=True, text=True)
    return float(done.stdout.split()[-1])


def verification(folder: Path, rounds: int) -> None:
    from embgemma_plugins.store.manifest import Manifest
    from embgemma_plugins.store.verify import check_folder

    manifest = Manifest.read(folder)
    size = sum((folder / name).stat().st_size for name in manifest.files)
    full = best(lambda: check_folder(folder, manifest, use_stamps=False), rounds)
    check_folder(folder, manifest)  # stamps written
    stat = best(lambda: check_folder(folder, manifest), rounds * 20)
    print(f"verify {folder.name}: {len(manifest.files)} files, {size / 1e6:,.1f} MB; "
          f"hash all: median {full[0]:.3f} s (min {full[1]:.3f}); stamps only: median "
          f"{stat[0] * 1e3:.3f} ms (min {stat[1] * 1e3:.3f})")
    env = dict(os.environ)
    first, later = [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as store:  # no stamps: the load hashes
            env["EMBGEMMA_HOME"] = store
            first.append(load_seconds(folder, env))
            later.append(load_seconds(folder, env))  # stamps of the load before
    print(f"EmbeddingGemma load, fresh process: first (hashes) median "
          f"{statistics.median(first):.3f} s, later (stats) median "
          f"{statistics.median(later):.3f} s over {rounds} pairs")


def tokenizer(folder: Path, rounds: int) -> list[str]:
    import sentencepiece as spm

    from embgemma_plugins.onnx_models.fidelity import CORPUS
    from embgemma_plugins.tokenizer import Tokenizer

    path = folder / "tokenizer.model"
    plain = best(lambda: spm.SentencePieceProcessor(model_proto=path.read_bytes()), rounds)
    ours = best(lambda: Tokenizer(path), rounds)
    tok = Tokenizer(path)
    print(f"tokenizer load: SentencePiece alone median {plain[0] * 1e3:.1f} ms, with "
          f"Literal median {ours[0] * 1e3:.1f} ms ({len(tok.literal.strings):,} protected "
          "strings)")
    lines = gzip.decompress(CORPUS.read_bytes()).decode().splitlines()
    texts = [json.loads(line)["text"] for line in lines if line.strip()]
    safe = best(lambda: tok.encode(texts, 2048), rounds)
    cut = sum(bool(tok.literal.cuts(t)) for t in texts)
    tok.literal.cuts = lambda text: []  # type: ignore[method-assign]  # check off
    raw = best(lambda: tok.encode(texts, 2048), rounds)
    print(f"encode {len(texts)} corpus texts: without the check median {raw[0] * 1e3:.1f} ms, "
          f"with it median {safe[0] * 1e3:.1f} ms ({cut} text(s) hold a protected string)")
    return texts


MARKUP = [
    "<table><tr><th>Package</th><th>Version</th></tr><tr><td>numpy</td><td>2.1</td></tr>"
    "</table>",
    "<h1>Install</h1><p>Run <code>pip install embgemma-plugins</code> first.</p>",
    "<ul><li>fast</li><li>small</li><li><strong>local</strong></li></ul>",
    "<blockquote>Mars is often called the <em>Red Planet</em>.</blockquote>",
    "<start_of_turn>user\nWhich planet is red?<end_of_turn>",
    "Fill the blank: the <mask> planet is Mars.",
]


def markup(folder: Path, texts: list[str]) -> None:
    """How far the vectors of texts holding a protected string move when it is read as
    text instead of as its token (what sentence-transformers would feed the model)."""
    import numpy as np
    import sentencepiece as spm

    from embgemma_plugins import EmbeddingGemma

    model = EmbeddingGemma(folder, build_missing=False)
    tok = model.tokenizer
    prompt = model.prompt_for("document")
    held = [t for t in texts if tok.literal.cuts(prompt + t)] + MARKUP
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    ours = model.tokenize(held, prompt).ids
    theirs = [np.array([2, *sp.encode(prompt + t)[: model.max_length - 2], 1]) for t in held]
    a, b = model.embed_tokens(ours), model.embed_tokens(theirs)
    cos = (a * b).sum(1)
    grow = [len(x) / len(y) for x, y in zip(ours, theirs, strict=True)]
    for text, c, x, y in zip(held, cos, ours, theirs, strict=True):
        print(f"  cosine {c:.4f}, {len(y)} -> {len(x)} tokens: {text[:70]!r}")
    print(f"{len(held)} texts with protected strings ({len(held) - len(MARKUP)} from the corpus):"
          f" cosine of text-as-text to token ids mean {cos.mean():.4f} min {cos.min():.4f}; "
          f"tokens x{np.mean(grow):.2f} on average")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="reliability", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="a variant folder (with manifest.json)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--skip-verify", action="store_true", help="only the tokenizer's figures")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as store:
        os.environ["EMBGEMMA_HOME"] = store  # stamps here, never in the folder's own store
        if not args.skip_verify:
            verification(args.folder, args.rounds)
        texts = tokenizer(args.folder, args.rounds)
        markup(args.folder, texts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
