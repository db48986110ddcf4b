"""A build a user can follow: `embgemma export` as a real process prints each step, a bar
with counts for calibration and measurement, and none of torch's or the exporter's warnings
unless --verbose; the bars' drawing is checked on its own."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

from embgemma_plugins.onnx_models.steps import Steps
from tests.cli_process import CLI


def export(tiny_checkpoint: Path, tiny_corpus: Path, out: Path, variant: str,
           *extra: str) -> subprocess.CompletedProcess[str]:
    command = [*CLI, "export", "--model", str(tiny_checkpoint), "--variant", variant, "--out",
               str(out), "--fidelity-corpus", str(tiny_corpus), "--allow-below-bar", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


def test_a_build_shows_steps_and_bars_and_no_third_party_warnings(
    tiny_checkpoint, tiny_corpus, tmp_path
):
    done = export(tiny_checkpoint, tiny_corpus, tmp_path / "int8", "int8")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert all(line.startswith("embgemma: ") for line in lines), done.stderr
    texts = len(tiny_corpus.read_text().splitlines())
    assert any(re.search(r"exporting .* with Optimum", line) for line in lines)
    assert any(re.search(r"calibrating \[#+\] \d+/\d+ texts", line) for line in lines)
    assert any(re.search(rf"measuring int8 \[#{{24}}\] {texts}/{texts} texts", line)
               for line in lines)
    assert lines[-1].startswith(f"embgemma: int8 variant ready in {tmp_path / 'int8'}")
    assert "Warning" not in done.stderr


def test_verbose_shows_what_the_exporter_says(tiny_checkpoint, tiny_corpus, tmp_path):
    done = export(tiny_checkpoint, tiny_corpus, tmp_path / "fp32", "fp32", "--verbose")
    assert done.returncode == 0, done.stderr
    assert "Warning" in done.stderr  # torch's export warnings on this tiny model


def test_a_bar_off_a_terminal_is_a_line_per_tenth():
    said: list[str] = []
    steps = Steps(said.append)
    with steps.count("measuring", 50, "texts") as tally:
        for _ in range(50):
            tally(1)
    assert len(said) == 10
    assert said[0].startswith("measuring [#") and "5/50 texts" in said[0] and "left" in said[0]
    assert said[-1].startswith("measuring [" + "#" * 24 + "] 50/50 texts")


def test_a_bar_on_a_terminal_is_redrawn_in_place():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    with Steps(stream=stream).count("calibrating", 4, "texts") as tally:
        tally(2)
        tally(2)
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("4/4 texts, 0:00\x1b[K\n")
