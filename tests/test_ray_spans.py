"""The Ray engine's input spans give exactly the local reader's chunks (no Ray needed).

Every span is counted and read on its own, as Ray tasks would, with spans of a few
bytes so that chunks, lines and blank lines straddle span boundaries.
"""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embgemma_plugins.jobs.job import chunked
from embgemma_plugins.jobs.readers import Reader
from embgemma_plugins.jobs.records import FieldSpec
from embgemma_plugins.ray import spans
from tests.texts import TEXTS

SPEC = FieldSpec("text", "id", "title", ("n",))


def messy_jsonl() -> bytes:
    lines = [b"\xef\xbb\xbf" + json.dumps({"id": "bom", "text": "first"}).encode()]
    for i, t in enumerate(TEXTS * 3):
        lines.append(
            json.dumps(
                {"id": f"d{i}", "text": t, "title": f"T{i}", "n": i}, ensure_ascii=False
            ).encode()
        )
        if i % 7 == 0:
            lines.append(b"   ")  # blank: not a row
        if i % 11 == 0:
            lines.append(b'{"id": "bad", "text": ')  # malformed
        if i % 13 == 0:
            lines.append(b'{"id": "x", "text": "caf\xe9"}')  # invalid UTF-8
        if i % 17 == 0:
            lines.append(json.dumps({"id": 5, "text": 3}).encode())  # text not a string
    return b"\r\n".join(lines[:40]) + b"\n" + b"\n".join(lines[40:])  # no final newline


def chunks_by_spans(source: spans.Source, span_bytes: int, lo: int = 0, hi: int | None = None):
    plan = spans.plan(source, span_bytes)
    if source.fmt != "parquet":
        counts = [spans.count(source, s) for s in plan]
        plan = spans.number(plan, counts)
    out = []
    for span in plan:
        out.extend(spans.read(source, span, lo, hi))
    return plan, out


def chunks_by_reader(path, fmt, spec, size):
    reader = Reader(str(path), fmt, spec)
    try:
        return list(enumerate(chunked(reader, size)))
    finally:
        reader.close()


@pytest.mark.parametrize("span_bytes", [1, 60, 700, 10**9])
@pytest.mark.parametrize("size", [1, 3, 8])
def test_jsonl_spans_give_the_readers_chunks(tmp_path, span_bytes, size):
    path = tmp_path / "in.jsonl"
    path.write_bytes(messy_jsonl())
    source = spans.Source(str(path), "jsonl", SPEC, size)
    plan, got = chunks_by_spans(source, span_bytes)
    assert got == chunks_by_reader(path, "jsonl", SPEC, size)
    if span_bytes == 60:
        assert len(plan) > 10  # the test does cut the file


def test_gzip_is_one_span_and_text_format(tmp_path):
    path = tmp_path / "in.txt.gz"
    path.write_bytes(
        gzip.compress(("\n".join(t.replace("\n", " ") for t in TEXTS) + "\n\n").encode())
    )
    source = spans.Source(str(path), "text", FieldSpec(), 4)
    plan, got = chunks_by_spans(source, 10)
    assert len(plan) == 1 and plan[0].gzip
    assert got == chunks_by_reader(path, "text", FieldSpec(), 4)


def test_parquet_spans_cover_row_groups(tmp_path, monkeypatch):
    rows = [{"id": f"p{i}", "text": t, "title": None, "n": i} for i, t in enumerate(TEXTS * 4)]
    rows[5]["text"] = None  # a reject
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=7)
    monkeypatch.setattr(spans, "SPAN_CHUNKS", 2)
    source = spans.Source(str(path), "parquet", SPEC, 5)
    plan, got = chunks_by_spans(source, 0)
    assert len(plan) > 3 and plan[-1].next_row is None
    assert got == chunks_by_reader(path, "parquet", SPEC, 5)


def test_chunk_window_and_totals(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(messy_jsonl())
    source = spans.Source(str(path), "jsonl", SPEC, 3)
    everything = chunks_by_reader(path, "jsonl", SPEC, 3)
    assert chunks_by_spans(source, 100, 0, 1)[1] == everything[:1]
    assert chunks_by_spans(source, 100, 1)[1] == everything[1:]
    plan = spans.plan(source, 100)
    counts = [spans.count(source, s) for s in plan]
    assert spans.total_rows(plan, counts) == sum(len(c) for _, c in everything)


def test_uri_and_errors(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"text": "a"}\n')
    source = spans.Source(f"file://{path}", "jsonl", FieldSpec(), 2)
    assert chunks_by_spans(source, 10)[1] == [(0, [spans.Record(0, 0, "a", line=1)])]
    with pytest.raises(spans.InputError, match="does not exist"):
        spans.plan(spans.Source(str(tmp_path / "nope.jsonl"), "jsonl", FieldSpec(), 2))
    with pytest.raises(spans.InputError, match="reads jsonl, text, parquet"):
        spans.plan(spans.Source(str(path), "csv", FieldSpec(), 2))
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"body": ["x"]}), bad)
    with pytest.raises(spans.InputError, match="no column 'text'"):
        spans.plan(spans.Source(str(bad), "parquet", FieldSpec(), 2))
