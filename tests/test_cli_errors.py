"""Bad input and misuse of ``embgemma embed``: exit codes, precise messages, rejects,
and the resumable work kept when a bad row stops a run."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from embgemma_plugins.cli.main import cli
from embgemma_plugins.jobs.workdir import work_path

GOOD = [json.dumps({"id": f"d{i}", "text": f"document number {i}"}) for i in range(10)]


def run(tiny_model, *args, input=None):
    return CliRunner().invoke(
        cli, ["embed", *map(str, args), "--model", str(tiny_model), "--threads", "1"], input=input
    )


def write(path, lines, mode="w"):
    if isinstance(lines, bytes):
        path.write_bytes(lines)
    else:
        path.write_text("\n".join(lines) + "\n")
    return path


BAD_LINES = [
    ('{"id": "x", "text": "unterminated}', "line 4: malformed JSON: Unterminated string"),
    ('{"id": "x", "body": "no text"}', "line 4: missing text field 'text' (fields: body, id)"),
    ('{"id": "x", "text": 42}', "line 4: text field 'text' is a number, not a string"),
    ('{"id": "x", "text": null}', "line 4: text field 'text' is null, not a string"),
    ('["a", "b"]', "line 4: a JSON line must be an object, not an array"),
    ('{"id": 1.5, "text": "x"}', "line 4: id field 'id' is a number, not a string or integer"),
    ('{"text": "x"}', "line 4: missing id field 'id'"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_bad_jsonl_line_stops_with_location(tmp_path, tiny_model, line, message):
    src = write(tmp_path / "in.jsonl", [*GOOD[:3], line, *GOOD[3:]])
    out = tmp_path / "out.parquet"
    result = run(tiny_model, src, out, "--id-field", "id")
    assert result.exit_code == 1
    assert f"Error: {src}, {message}" in result.output
    # No chunk was finished (the bad row is in the first): nothing to resume, no work folder.
    assert "nothing was kept; fix the input and rerun the same command" in result.output
    assert "--on-error skip added" in result.output
    assert not out.exists() and not work_path(out).exists()


def test_invalid_utf8_is_reported_on_its_line(tmp_path, tiny_model):
    data = ("\n".join(GOOD[:2]) + "\n").encode() + b'{"text": "caf\xe9"}\n'
    src = write(tmp_path / "in.jsonl", data)
    result = run(tiny_model, src, tmp_path / "o.parquet")
    assert result.exit_code == 1
    assert f"{src}, line 3: invalid UTF-8 at byte 14 of the line" in result.output


def test_ragged_csv_row(tmp_path, tiny_model):
    src = write(tmp_path / "in.csv", ["id,text", "a,hello", "b,hello,extra", "c,bye"])
    result = run(tiny_model, src, tmp_path / "o.parquet")
    assert result.exit_code == 1
    assert f"{src}, line 3: ragged CSV row: 3 fields, the header has 2" in result.output


def test_csv_multiline_record_keeps_line_numbers(tmp_path, tiny_model):
    src = write(tmp_path / "in.csv", ["id,text", 'a,"two', 'lines"', "b,x,y"])
    result = run(tiny_model, src, tmp_path / "o.parquet")
    assert f"{src}, line 4: ragged CSV row" in result.output


def test_skip_writes_rejects_and_goes_on(tmp_path, tiny_model):
    lines = [*GOOD[:3], "{oops", '{"id": "n", "text": 5}', *GOOD[3:]]
    src = write(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.parquet"
    result = run(
        tiny_model, src, out, "--id-field", "id", "--on-error", "skip", "--chunk-rows", "4"
    )
    assert result.exit_code == 0, result.output
    assert "2 rejected row(s)" in result.output and "2 skipped" in result.output
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == [f"d{i}" for i in range(10)]
    rejects = [json.loads(x) for x in (tmp_path / "out.parquet.rejects.jsonl").open()]
    assert [(r["line"], r["row"]) for r in rejects] == [(4, 3), (5, 4)]
    assert rejects[0]["reason"].startswith("malformed JSON") and rejects[0]["input"] == "{oops"
    assert rejects[1]["reason"] == "text field 'text' is a number, not a string"
    assert rejects[0]["file"] == str(src)


def test_bad_row_keeps_work_and_resume_after_fix_matches_clean_run(tmp_path, tiny_model):
    lines = list(GOOD)
    lines[7] = "{broken"
    src = write(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.parquet"
    first = run(tiny_model, src, out, "--chunk-rows", "3")
    assert first.exit_code == 1 and "2 finished chunk(s) are kept" in first.output
    again = run(tiny_model, src, out, "--chunk-rows", "3")
    assert again.exit_code == 2 and "add --resume" in again.output
    write(src, GOOD)
    resumed = run(tiny_model, src, out, "--chunk-rows", "3", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "6 from the interrupted run" in resumed.output
    clean = tmp_path / "clean.parquet"
    assert run(tiny_model, src, clean, "--chunk-rows", "3").exit_code == 0
    assert pq.read_table(out).equals(pq.read_table(clean))
    assert not work_path(out).exists()


def test_resume_with_other_options_is_refused(tmp_path, tiny_model):
    src = write(tmp_path / "in.jsonl", [*GOOD[:4], "{bad"])
    out = tmp_path / "out.parquet"
    assert run(tiny_model, src, out, "--chunk-rows", "2").exit_code == 1
    result = run(tiny_model, src, out, "--chunk-rows", "2", "--resume", "--dim", "256")
    assert result.exit_code == 2
    assert "dimensions: was 768, now 256" in result.output
    restart = run(tiny_model, src, out, "--chunk-rows", "2", "--overwrite", "--on-error", "skip")
    assert restart.exit_code == 0, restart.output


@pytest.mark.parametrize("flag", ["--long", "--on-long"])  # --on-long: the older name
def test_long_error_names_the_line_row_and_token_count(tmp_path, tiny_model, flag):
    from embgemma_plugins.tokenizer import Tokenizer

    text = "word " * 200
    tokens = Tokenizer(tiny_model / "tokenizer.model").encode(["title: none | text: " + text], 3)
    src = write(tmp_path / "in.jsonl", [*GOOD[:2], json.dumps({"text": text})])
    result = run(tiny_model, src, tmp_path / "o.parquet", "--max-length", "32", flag, "error")
    assert result.exit_code == 1
    assert (f"{src}, line 3 (row 2, id 2): text is {tokens.lengths[0]} tokens with its prompt, "
            "longer than --max-length 32") in result.output


def test_duplicate_ids_are_reported(tmp_path, tiny_model):
    src = write(tmp_path / "in.jsonl", [*GOOD[:3], GOOD[1], GOOD[1], GOOD[2]])
    out = tmp_path / "o.parquet"
    result = run(tiny_model, src, out, "--id-field", "id", "--chunk-rows", "2")
    assert result.exit_code == 0
    assert "warning: 2 duplicate id(s) in 'id': 'd1' x3, 'd2' x2" in result.output
    assert pq.read_table(out).num_rows == 6


def test_existing_out_needs_overwrite(tmp_path, tiny_model):
    src = write(tmp_path / "in.jsonl", GOOD)
    out = tmp_path / "o.parquet"
    out.write_text("precious")
    result = run(tiny_model, src, out)
    assert result.exit_code == 2 and "exists; add --overwrite" in result.output
    assert out.read_text() == "precious"
    assert run(tiny_model, src, out, "--overwrite").exit_code == 0
    assert pq.read_table(out).num_rows == 10


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "query", "--prompt", "x: "], "give --task or --prompt, not both"),
        (["--title-field", "t", "--task", "query"], "--title-field builds the document prompt"),
        (["--keep", "id"], "'id' is a column of the output already"),
        (["--task", "nonsense"], "unknown task 'nonsense'; valid tasks: "),
        (["--provider", "cuda"], "available: "),
        (["--provider", "nosuch"], "unknown provider 'nosuch'; available here: "),
        (["--id-field", "missing"], "has no column 'missing' (columns: id, text)"),
    ],
)
def test_misuse_messages(tmp_path, tiny_model, args, message):
    src = tmp_path / "in.csv"
    src.write_text("id,text\na,hello\n")
    result = run(tiny_model, src, tmp_path / "o.parquet", *args)
    assert result.exit_code in (1, 2)
    assert message in result.output


def test_usage_errors(tmp_path, tiny_model):
    src = write(tmp_path / "in.jsonl", GOOD)
    cases = [
        ([src, tmp_path / "o.csv"], "OUT must end in .parquet or .npy"),
        ([tmp_path / "nope.jsonl", tmp_path / "o.parquet"], "does not exist"),
        (["-", tmp_path / "o.parquet"], "cannot tell the format of stdin; add --format"),
        ([tmp_path / "in.dat", tmp_path / "o.parquet"], "cannot tell the format"),
        ([src, tmp_path / "o.npy", "--keep", "x"], "a .npy output holds only embeddings"),
    ]
    (tmp_path / "in.dat").write_text("x")
    for args, message in cases:
        result = run(tiny_model, *args, input="")
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output
