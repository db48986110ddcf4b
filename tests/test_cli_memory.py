"""Memory stays flat: peak RSS of a run does not grow with the number of rows.

Each run is a real process; its peak RSS is read with ``getrusage(RUSAGE_CHILDREN)``
in a fresh wrapper process.  Six times the rows may not add 10 MB
(keeping every vector of the long run would add 15 MB; measured: 1,000 rows
194 MB, 8,000 rows 196 MB).  docs/memory.md has the
measurements on 1,000,000 lines and on the real model.
"""

from __future__ import annotations

import random
import subprocess
import sys

from .cli_process import CLI

WRAPPER = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss_kb(args) -> int:
    cmd = [sys.executable, "-c", WRAPPER, *CLI, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


def test_peak_rss_does_not_grow_with_rows(tmp_path, tiny_model):
    rng = random.Random(3)
    words = ["alpha", "beta", "gamma", "delta", "search", "vector", "planet", "red"]
    lines = [" ".join(rng.choices(words, k=rng.randint(2, 8))) for _ in range(6_000)]
    peaks = {}
    for n in (1_000, 6_000):
        src = tmp_path / f"in{n}.txt"
        src.write_text("\n".join(lines[:n]) + "\n")
        peaks[n] = peak_rss_kb(
            [
                "embed",
                str(src),
                str(tmp_path / f"o{n}.parquet"),
                "--model",
                str(tiny_model),
                "--chunk-rows",
                "100",
                "--batch-tokens",
                "2048",
                "-q",
            ]
        )
    growth_mb = (peaks[6_000] - peaks[1_000]) / 1024
    print("peak RSS (kB) by rows:", peaks)
    assert growth_mb < 10, f"peak RSS grew by {growth_mb:.1f} MB for 5,000 more rows: {peaks}"


def test_the_session_is_released_before_the_parts_are_assembled(tmp_path, tiny_model, monkeypatch):
    """Assembling the final file (pyarrow buffers, the id scan) must not stack on the
    session's arena and weights: the model is gone by the time `finish` runs."""
    import weakref

    from click.testing import CliRunner

    from embgemma_plugins.cli.main import cli
    from embgemma_plugins.jobs import local as embed_run

    models: list[weakref.ref] = []
    alive_at_finish: list[bool] = []
    load, finish = embed_run.load_model, embed_run.finish

    def tracked_load(a):
        model = load(a)
        models.append(weakref.ref(model))
        return model

    def tracked_finish(*args, **kwargs):
        alive_at_finish.append(models[0]() is not None)
        return finish(*args, **kwargs)

    monkeypatch.setattr(embed_run, "load_model", tracked_load)
    monkeypatch.setattr(embed_run, "finish", tracked_finish)
    src = tmp_path / "in.txt"
    src.write_text("one line\nanother line\n")
    out = tmp_path / "out.parquet"
    result = CliRunner().invoke(
        cli,
        ["embed", str(src), str(out), "--model", str(tiny_model), "-q"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert alive_at_finish == [False]
    assert out.exists()
