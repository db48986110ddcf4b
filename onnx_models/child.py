"""The build's torch steps, each in a child process: the Optimum export and the
sentence-transformers reference vectors.

torch, transformers and the exporter keep gigabytes that a process never returns to the
system (the fp32 weights, the traced graph, the serialised protobuf); in a child, all of it
is returned when the step ends, so the rest of the build (graph passes, quantisation,
measurement) runs beside none of it. The child runs with warnings off and its stderr kept
aside (shown only if it fails) unless ``verbose``; it reports counts on stdout as lines
``@embgemma done N``, which the parent turns into a progress bar.

The jobs themselves are in ``torch_steps.py``, run as
``python -m embgemma_plugins.onnx_models.torch_steps JOB ARGS...`` by :func:`run`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence

from embgemma_plugins.errors import EmbeddingGemmaError

PREFIX = "@embgemma done "
QUIET_ENV = {"PYTHONWARNINGS": "ignore", "TRANSFORMERS_VERBOSITY": "error",
             "TOKENIZERS_PARALLELISM": "false"}


def run(job: str, args: Sequence[str], done: Callable[[int], None] | None = None,
        verbose: bool = False) -> None:
    """Run ``job`` in a child process; raises naming the step, with the end of its output,
    if it fails."""
    command = [sys.executable, "-m", f"{__package__}.torch_steps", job, *args]
    env = {**os.environ, **({} if verbose else QUIET_ENV)}
    with tempfile.TemporaryFile("w+", encoding="utf-8") as log:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=None if verbose else log,
                                 text=True, env=env)
        said: list[str] = []
        try:
            assert child.stdout is not None
            for line in child.stdout:
                if line.startswith(PREFIX):
                    if done is not None:
                        done(int(line[len(PREFIX):]))
                elif verbose:
                    print(line, end="", file=sys.stderr)
                else:
                    said = [*said[-50:], line]
            code = child.wait()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        if code:
            log.seek(0)
            tail = ("".join(said) + log.read())[-4000:]
            raise EmbeddingGemmaError(f"the build step {job!r} failed (exit code {code}); "
                                      f"its last output:\n{tail}")
