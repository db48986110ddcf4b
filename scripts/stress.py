"""Hostile use of ``embgemma embed``, in one go: does any row get lost, mixed or misaligned?

Every case (scripts/stress_cases.py) runs the real CLI in subprocesses, as a careful but
unlucky user would: two runs on one OUT, a disk that fills up, signals at bad moments,
inputs built to break the readers, a damaged model...  When a run stops, the case does what
the message says (``--resume``, a fixed input, more room) until the job completes, and
then counts: rows in the input = rows in OUT + rows in the rejects file.  Any raw
traceback on stderr, any ``*.tmp`` or lock file left behind, fails the case.

    python scripts/stress.py                      # the tiny model, built once (export extra)
    python scripts/stress.py --model DIR -k disk  # another model; only cases matching "disk"
    python scripts/stress.py --markdown table.md  # also write the table

Exit code 0 when every case balances, 1 otherwise.  Mounting a tmpfs (full disk,
read-only folder) needs root; without it those cases are reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "embgemma_plugins.cli.main"]


class Skip(Exception):
    """A case that cannot run here (says why)."""


@dataclass
class Outcome:
    case: str
    story: str = ""
    codes: list[int] = field(default_factory=list)
    rows_in: int = 0
    rows_out: int = 0
    rejected: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def balanced(self) -> bool:
        return not self.problems and self.rows_in == self.rows_out + self.rejected


@dataclass
class Ctx:
    """What a case gets: its own folder, the model, and a way to run the CLI."""

    folder: Path
    model: Path
    outcome: Outcome

    def args(self, src: Path | str, out: Path, *extra: str, model: Path | None = None
             ) -> list[str]:
        return [*CLI, "embed", str(src), str(out), "--model", str(model or self.model),
                "--threads", "1", *extra]

    def embed(self, src: Path | str, out: Path, *extra: str, stdin: bytes | None = None,
              model: Path | None = None) -> tuple[int, str]:
        done = subprocess.run(self.args(src, out, *extra, model=model), input=stdin,
                              capture_output=True, timeout=600)
        return self.note(done.returncode, done.stderr.decode("utf-8", "replace"))

    def start(self, src: Path | str, out: Path, *extra: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.args(src, out, *extra), stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait(self, proc: subprocess.Popen[bytes], data: bytes | None = None) -> tuple[int, str]:
        _, err = proc.communicate(data, timeout=600)
        return self.note(proc.returncode, err.decode("utf-8", "replace"))

    def note(self, code: int, err: str) -> tuple[int, str]:
        self.outcome.codes.append(code)
        if "Traceback" in err:
            self.outcome.problems.append(f"traceback: {err.strip().splitlines()[-1]}")
        return code, err

    def expect(self, condition: bool, problem: str) -> None:
        if not condition:
            self.outcome.problems.append(problem)

    def count(self, out: Path, rejects: Path | None = None) -> None:
        """Rows of OUT and of its rejects file into the outcome, and the folder's litter."""
        if out.suffix == ".npy":
            import numpy as np

            self.outcome.rows_out = int(np.load(out).shape[0]) if out.exists() else 0
        else:
            import pyarrow.parquet as pq

            self.outcome.rows_out = pq.ParquetFile(out).metadata.num_rows if out.exists() else 0
        rejects = rejects or out.with_name(out.name + ".rejects.jsonl")
        if rejects.exists():
            with open(rejects, encoding="utf-8") as f:
                self.outcome.rejected = sum(1 for line in f if line.strip())
        litter = [str(p.relative_to(out.parent)) for p in out.parent.rglob("*")
                  if p.name.endswith(".tmp") or "embgemma-lock" in p.name
                  or "embgemma-run" in p.name or p.name.endswith(".embgemma-work")]
        self.expect(not litter, f"left behind: {', '.join(litter)}")


def tiny_model(cache: Path) -> Path:
    """The unit tests' tiny model, exported once into ``cache``."""
    target = cache / "fp32"
    if (target / "manifest.json").is_file():
        return target
    sys.path.insert(0, str(ROOT))
    import gzip
    import importlib

    from embgemma_plugins.onnx_models.export import export_variant
    from embgemma_plugins.onnx_models.fidelity import CORPUS

    tiny = importlib.import_module("tests.tiny_model")  # the test suite's own builder
    checkpoint = tiny.build_checkpoint(cache / "checkpoint")
    lines = gzip.decompress(CORPUS.read_bytes()).decode().splitlines()[::12]
    corpus = cache / "corpus.jsonl"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(export_variant(checkpoint, "fp32", out=target, progress=lambda _m: None,
                               corpus=corpus))


def table(outcomes: list[Outcome]) -> str:
    rows = ["| case | what happened | exit codes | rows in | rows out | rejected | "
            "in = out + rejected |", "|---|---|---|---:|---:|---:|---|"]
    for o in outcomes:
        verdict = ("skipped: " + o.story if o.codes == [] and o.story.startswith("needs")
                   else "yes" if o.balanced else "NO: " + "; ".join(o.problems or ["count"]))
        rows.append(f"| {o.case} | {o.story} | {' '.join(map(str, o.codes))} | {o.rows_in} | "
                    f"{o.rows_out} | {o.rejected} | {verdict} |")
    return "\n".join(rows)


def run_case(name: str, case: Callable[[Ctx], None], root: Path, model: Path) -> Outcome:
    outcome = Outcome(name)
    folder = root / name
    folder.mkdir(parents=True)
    started = time.monotonic()
    try:
        case(Ctx(folder, model, outcome))
    except Skip as e:
        outcome.story, outcome.codes = str(e), []
    except Exception as e:  # a broken case is reported, not hidden
        outcome.problems.append(f"case error: {type(e).__name__}: {e}")
    outcome.seconds = time.monotonic() - started
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model folder (default: the tiny model)")
    parser.add_argument("-k", default="", help="run only the cases whose name contains this")
    parser.add_argument("--markdown", type=Path, help="write the table to this file too")
    parser.add_argument("--json", type=Path, help="write the outcomes as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the cases' folders")
    a = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.modules.setdefault("stress", sys.modules[__name__])  # the cases' `from stress import`
    from stress_cases import CASES

    root = Path(tempfile.mkdtemp(prefix="embgemma-stress-"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("EMBGEMMA_HOME", str(root / "store"))
    model = a.model or tiny_model(Path(tempfile.gettempdir()) / "embgemma-stress-model")
    outcomes = []
    for name, case in CASES.items():
        if a.k in name:
            outcomes.append(run_case(name, case, root, model))
            o = outcomes[-1]
            state = "ok" if o.balanced else "skip" if not o.codes else "FAIL"
            print(f"{state:4} {name} ({o.seconds:.1f} s) {'; '.join(o.problems)}",
                  file=sys.stderr)
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)
    text = table(outcomes)
    print(text)
    ran = [o for o in outcomes if o.codes]
    totals = (f"\n{len(ran)} cases ran, {sum(o.balanced for o in ran)} balanced; "
              f"{len(outcomes) - len(ran)} skipped; rows in {sum(o.rows_in for o in ran)} = "
              f"out {sum(o.rows_out for o in ran)} + rejected {sum(o.rejected for o in ran)}")
    print(totals)
    if a.markdown:
        a.markdown.write_text(text + "\n" + totals + "\n", encoding="utf-8")
    if a.json:
        a.json.write_text(json.dumps([o.__dict__ for o in outcomes], indent=1))
    return 0 if all(o.balanced for o in ran) else 1


if __name__ == "__main__":
    sys.exit(main())
