"""A new user's first vector from a prebuilt repository: a clean base install (a new virtual
environment, ``pip install`` of this checkout with its base requirements only), an empty
model store, a variant folder published into a fresh hub cache as ``huggingface_hub`` lays
out a download (``HF_HUB_OFFLINE=1``: the cache stands for a finished download), then one
query embedded, timed from the interpreter's start with ``/usr/bin/time -v`` (wall time,
peak RSS; the manifest's sha256 check of every file included)::

    python -m benchmarks.first_vector ~/.cache/embgemma-plugins/google--embeddinggemma-300m/int8

Prints the install time, whether ``import torch`` fails there, and each run's wall time and
peak RSS (the first run, a second one, ``embgemma embed --model`` and ``embgemma pull``).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.hubcache import publish

ROOT = Path(__file__).resolve().parents[1]
REPO = "acme/embeddinggemma-variants"
FIRST = """
from embgemma_plugins import EmbeddingGemma
m = EmbeddingGemma("{repo}", variant="{variant}")
print(m.embed_queries(["Which planet is known as the Red Planet?"]).shape, m.files.root)
"""


def timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of `command` by /usr/bin/time -v; fails loudly."""
    report = cwd / "time.txt"
    done = subprocess.run(["/usr/bin/time", "-v", "-o", str(report), *command], env=env,
                          cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    text = report.read_text()
    clock = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    assert clock and rss, text
    seconds = sum(float(p) * 60**i for i, p in enumerate(reversed(clock[1].split(":"))))
    return seconds, int(rss[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a built variant folder (with manifest.json)")
    parser.add_argument("--variant", default="int8", help="the subfolder to publish it as")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="first-vector-") as tmp:
        work = Path(tmp)
        start = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
        pip = [str(work / "venv/bin/python"), "-m", "pip", "install", "--quiet",
               "--disable-pip-version-check", str(ROOT)]
        subprocess.run(pip, check=True)
        print(f"base install: {time.monotonic() - start:.1f} s")
        python, cli = str(work / "venv/bin/python"), str(work / "venv/bin/embgemma")
        torch = subprocess.run([python, "-c", "import torch"], capture_output=True).returncode
        print("import torch:", "fails" if torch else "WORKS (not a base install)")
        publish(args.folder.resolve(), work / "hub", REPO, args.variant)
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "HF_HUB_CACHE": str(work / "hub"),
               "HF_HUB_OFFLINE": "1", "EMBGEMMA_HOME": str(work / "store")}
        (work / "first.py").write_text(FIRST.format(repo=REPO, variant=args.variant))
        (work / "q.txt").write_text("Which planet is known as the Red Planet?\n")
        runs = {
            "first vector (Python)": [python, "first.py"],
            "a second run": [python, "first.py"],
            "embgemma embed --model": [cli, "embed", "q.txt", "q.npy", "--model", REPO,
                                       "--variant", args.variant, "--task", "query", "-q"],
            "embgemma pull": [cli, "pull", REPO, "--variant", args.variant],
        }
        for name, command in runs.items():
            seconds, mb = timed(command, env, work)
            print(f"{name}: {seconds:.2f} s, peak RSS {mb:.0f} MB")


if __name__ == "__main__":
    main()
