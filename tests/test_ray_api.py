"""The Ray engine without a Ray runtime: optional import, the missing-extra message,
usage errors found before Ray starts, and errors carried back from actors."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest
from click.testing import CliRunner

from embgemma_plugins.cli.main import cli
from embgemma_plugins.errors import RowError as BadRowError
from embgemma_plugins.ray.settings import bad_row_message

NO_RAY = "import sys; sys.modules['ray'] = None; sys.modules['ray.data'] = None\n"


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300
    )


def test_import_never_loads_ray():
    done = run(
        "import sys, embgemma_plugins, embgemma_plugins.ray, embgemma_plugins.cli.main\n"
        "import embgemma_plugins.ray.engine, embgemma_plugins.ray.dataset\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'ray')))".replace(
            "import sys,", "import json, sys,"
        )
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_embed_dataset_without_ray_names_the_extra():
    done = run(
        NO_RAY + "from embgemma_plugins.ray import embed_dataset\n"
        "try:\n    embed_dataset(None)\n"
        "except ImportError as e:\n    print(e)\n"
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'embgemma-plugins[ray]'" in done.stdout


def test_cli_without_ray_names_the_extra(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "a"}\n')
    done = run(
        NO_RAY + "from embgemma_plugins.cli.main import cli\n"
        f"cli(['embed', {str(src)!r}, {str(tmp_path / 'o.parquet')!r}, '--engine', 'ray'])"
    )
    assert done.returncode == 1
    assert "--engine ray needs Ray: pip install 'embgemma-plugins[ray]'" in done.stderr
    assert not (tmp_path / "o.parquet").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--engine", "ray", "--resume"], "--resume is for --engine local"),
        (["--engine", "ray", "--task", "query", "--prompt", "x"], "--task or --prompt"),
        (["--actors", "2"], "--address and --actors need --engine ray"),
        (["--engine", "ray", "--keep", "id"], "a column of the output already"),
    ],
)
def test_usage_errors_come_before_ray(tmp_path, extra, message):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "a"}\n')
    result = CliRunner().invoke(cli, ["embed", str(src), str(tmp_path / "o.parquet"), *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_existing_out_and_stdin_are_refused(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "a"}\n')
    out = tmp_path / "o.parquet"
    out.write_bytes(b"x")
    result = CliRunner().invoke(cli, ["embed", str(src), str(out), "--engine", "ray"])
    assert result.exit_code == 2 and "add --overwrite" in result.output
    result = CliRunner().invoke(
        cli,
        ["embed", "-", str(tmp_path / "p.parquet"), "--engine", "ray", "--format", "jsonl"],
        input='{"text": "a"}\n',
    )
    assert result.exit_code == 2 and "not stdin" in result.output


def test_bad_row_message_is_found_through_wrappers():
    inner = BadRowError("docs.jsonl, line 7: malformed JSON")
    assert pickle.loads(pickle.dumps(inner)).args == inner.args  # crosses process borders
    try:
        try:
            raise inner
        except BadRowError as e:
            raise RuntimeError("task failed") from e
    except RuntimeError as outer:
        assert bad_row_message(outer) == "docs.jsonl, line 7: malformed JSON"
    flattened = RuntimeError(
        "ray::MapWorker()\nembgemma_plugins.ray.settings.BadRowError: docs.jsonl, line 7: x\n  more"
    )
    assert bad_row_message(flattened) == "docs.jsonl, line 7: x"
    assert bad_row_message(RuntimeError("other")) is None
