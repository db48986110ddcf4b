"""The pure pieces an engine shares: record extraction, readers, quantisation, schema."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from embgemma_plugins.jobs.output import Layout, encode_metadata
from embgemma_plugins.jobs.quantise import arrow_embedding, calibrate, quantise, width
from embgemma_plugins.jobs.readers import InputError, Reader, detect_format
from embgemma_plugins.jobs.records import FieldSpec, Record, Reject, extract, from_json_line

SPEC = FieldSpec("text", "id", "title", ("meta", "n"))


def test_extract_record_and_kept_values():
    data = {"text": "hi", "id": 7, "title": None, "meta": {"b": 1, "a": [1]}, "n": 3.5}
    rec = extract(data, SPEC, row=4, line=9)
    assert rec == Record(4, "7", "hi", None, ('{"a": [1], "b": 1}', "3.5"), 9)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"id": "a"}, "missing text field 'text' (fields: id)"),
        ({"text": ["x"], "id": "a"}, "text field 'text' is an array, not a string"),
        ({"text": "x", "id": True}, "id field 'id' is a boolean, not a string or integer"),
        ({"text": "x", "id": "a", "title": 3}, "title field 'title' is a number, not a string"),
    ],
)
def test_extract_rejects(data, reason):
    rej = extract(data, SPEC, row=0, line=1)
    assert isinstance(rej, Reject) and rej.reason == reason


def test_json_line_errors():
    assert from_json_line("{", SPEC, 0, 3).reason.startswith("malformed JSON")
    assert from_json_line("3", SPEC, 0, 3).reason == "a JSON line must be an object, not a number"


def test_spec_checks_and_columns():
    assert FieldSpec(keep=("embedding",)).check() == [
        "--keep embedding: 'embedding' is a column of the output already"
    ]
    assert FieldSpec("t", "i", None, ("t", "x")).columns() == ["t", "i", "x"]


def test_detect_format():
    assert detect_format("a/b.JSONL.gz", None) == "jsonl"
    assert detect_format("x.tsv", "csv") == "csv"
    assert detect_format("x.txt.gz", None) == "text"
    with pytest.raises(InputError, match="add --format"):
        detect_format("-", None)


def test_text_reader_skips_blank_lines_and_counts_rows(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbfone\r\n\n  \ntwo\n\xff\n")
    items = list(Reader(str(path), "text", FieldSpec()))
    assert [(i.row, i.line) for i in items] == [(0, 1), (1, 4), (2, 5)]
    assert items[0].text == "one" and isinstance(items[2], Reject)


def test_text_reader_refuses_fields(tmp_path):
    (tmp_path / "a.txt").write_text("x\n")
    with pytest.raises(InputError, match="plain text input has no fields"):
        Reader(str(tmp_path / "a.txt"), "text", FieldSpec(id="id"))


def test_quantise_shapes_and_types():
    v = np.random.default_rng(0).standard_normal((6, 128)).astype(np.float32)
    ranges = calibrate(v)
    assert json.loads(json.dumps(ranges)) == ranges  # JSON round trip is exact
    assert quantise(v, "int8", ranges).dtype == np.int8
    assert quantise(v, "uint8", ranges).max() == 255
    assert quantise(v, "ubinary").shape == (6, 16) == (6, width("binary", 128))
    assert np.array_equal(np.unpackbits(quantise(v, "ubinary"), axis=1), (v > 0).astype(np.uint8))
    arr = arrow_embedding(quantise(v, "binary"), "binary")
    assert arr.type == pa.list_(pa.int8(), 16)
    with pytest.raises(ValueError, match="calibration"):
        quantise(v, "int8")


def test_layout_schema_and_metadata_are_canonical():
    layout = Layout(SPEC, 256, "uint8")
    schema = layout.schema({"b": 1, "a": 2})
    assert schema.names == ["id", "meta", "n", "embedding"]
    assert schema.field("embedding").type == pa.list_(pa.uint8(), 256)
    assert schema.metadata[b"embgemma"] == encode_metadata({"a": 2, "b": 1})
    assert Layout(FieldSpec(), 768).schema().field("id").type == pa.int64()
