"""Every reader against inputs built to break it (issue 23, finding 2 and strict parsing).

Each case states what the reader must make of the input: the rows it yields (records and
rejections, each on the line where it starts) or the one named error that stops it.
Nothing may vanish silently: an input row is a record, a rejection, or an error.
"""

from __future__ import annotations

import gzip

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embgemma_plugins.errors import InputError
from embgemma_plugins.jobs.readers import Reader
from embgemma_plugins.jobs.records import FieldSpec, Record, Reject

MB = "x" * (1 << 20)
FIELD_LIMIT = 64 << 20  # jobs/csvrows.py: a CSV field never holds more


def items(tmp_path, name: str, data: bytes, fmt: str, spec: FieldSpec | None = None):
    path = tmp_path / name
    path.write_bytes(data)
    reader = Reader(str(path), fmt, spec or FieldSpec())
    try:
        return [(type(i).__name__, i.line, i.text if isinstance(i, Record) else i.reason)
                for i in reader]
    finally:
        reader.close()


def error(tmp_path, name: str, data: bytes, fmt: str, spec: FieldSpec | None = None) -> str:
    with pytest.raises(InputError) as e:
        items(tmp_path, name, data, fmt, spec)
    return str(e.value)


# --- CSV ------------------------------------------------------------------------------

def test_csv_unclosed_quote_is_an_error_naming_the_line_it_opened(tmp_path):
    data = b'id,text\na,hello\nb,"open quote\nc,third\nd,fourth\n'
    message = error(tmp_path, "u.csv", data, "csv")
    assert message.startswith(f"{tmp_path / 'u.csv'}, line 3: a quoted field opened on this "
                              "line is still open at the end of the file")


def test_csv_field_open_at_eof_after_a_closed_multiline_field(tmp_path):
    data = b'id,text\na,"two\nlines",\nb,x,"opened here\nand never\nclosed'
    assert ", line 4: a quoted field opened" in error(tmp_path, "u.csv", data, "csv")


def test_csv_unclosed_quote_in_a_large_file_stops_at_the_field_limit(tmp_path):
    body = b"".join(b"r%d,plain row %d\n" % (i, i) for i in range(40_000))
    lines = body.count(b"\n")
    data = b'id,text\na,"starts\n' + body * (FIELD_LIMIT // len(body) + 1)
    message = error(tmp_path, "u.csv", data, "csv")
    assert ", line 2: a quoted field opened on this line runs past 64 MB" in message
    assert lines > 1000


def test_csv_a_lost_closing_quote_before_quoted_rows_is_a_two_line_reject(tmp_path):
    path = tmp_path / "q.csv"
    path.write_bytes(b'id,text\na,"one"\nb,"two\nc,"three"\nd,"four"\n')
    got = list(Reader(str(path), "csv", FieldSpec()))
    assert [type(i).__name__ for i in got] == ["Record", "Reject", "Record"]
    assert got[1].line == 3 and got[1].raw == 'b,"two\nc,"three"'
    assert got[1].reason.startswith("malformed CSV in the record on lines 3-4 (a quote "
                                     "opened on line 3)")


def test_csv_an_unquoted_field_past_the_limit(tmp_path):
    data = b"id,text\na," + b"z" * (FIELD_LIMIT + 10) + b"\n"
    assert "line 2: a field longer than 64 MB" in error(tmp_path, "big.csv", data, "csv")


def test_opening_line_follows_the_csv_rules():
    from embgemma_plugins.jobs.csvrows import opening_line

    assert opening_line(['a,"x""y\n', 'z\n'], 5) == 5  # an escaped quote keeps it open
    assert opening_line(['a,b"c,"d\n'], 2) == 2  # a quote inside an unquoted field is text
    assert opening_line(['a,"x"\n', 'b,"y\n'], 7) == 8


def test_csv_duplicate_header_name_is_an_error(tmp_path):
    message = error(tmp_path, "d.csv", b"id,text,text\na,b,c\n", "csv")
    assert message == (f"{tmp_path / 'd.csv'}, line 1: the CSV header names column 'text' "
                       "2 times (columns 2, 3); give each column its own name")


def test_csv_header_only_and_empty(tmp_path):
    assert items(tmp_path, "h.csv", b"id,text\n", "csv") == []
    assert items(tmp_path, "h2.csv", b"id,text", "csv") == []
    assert items(tmp_path, "e.csv", b"", "csv") == []


def test_csv_truncated_last_line_is_a_ragged_row(tmp_path):
    got = items(tmp_path, "t.csv", b"id,text\na,ok\nb", "csv")
    assert got == [("Record", 2, "ok"), ("Reject", 3, "ragged CSV row: 1 fields, the header has 2")]


def test_csv_lone_carriage_return(tmp_path):
    got = items(tmp_path, "r.csv", b'id,text\na,hel\rlo\nb,"in\rquotes"\nc,ok\n', "csv")
    assert got[0][:2] == ("Reject", 2) and "carriage return" in got[0][2]
    assert got[1:] == [("Record", 3, "in\rquotes"), ("Record", 4, "ok")]
    mac = error(tmp_path, "m.csv", b"id,text\ra,x\rb,y\r", "csv")
    assert "line 1: unreadable CSV header: a carriage return" in mac


def test_csv_strict_quotes(tmp_path):
    got = items(tmp_path, "s.csv", b'id,text\na,"x"y\nb,ok\n', "csv")
    assert got == [("Reject", 2, "malformed CSV: ',' expected after '\"'"), ("Record", 3, "ok")]


def test_csv_mixed_encodings_and_a_one_megabyte_field(tmp_path):
    data = b'id,text\na,caf\xe9\nb,"' + MB.encode() + b'"\nc,\xc3\xa9t\xc3\xa9\n'
    got = items(tmp_path, "m.csv", data, "csv")
    assert got[0] == ("Reject", 2, "invalid UTF-8 on line 2")
    assert got[1] == ("Record", 3, MB) and got[2] == ("Record", 4, "été")


# --- JSONL and text -------------------------------------------------------------------

def test_jsonl_truncated_last_line_and_lone_cr(tmp_path):
    data = (b'{"text": "a"}\n{"text": "b"}\r\n{"text": "c\rd"}\n{"x": 1}\r{"text": "e"}\n'
            b'{"text": "cut')
    got = items(tmp_path, "t.jsonl", data, "jsonl")
    assert got[:2] == [("Record", 1, "a"), ("Record", 2, "b")]
    assert got[2] == ("Reject", 3, "malformed JSON: Invalid control character at (column 12)")
    assert got[3] == ("Reject", 4, "malformed JSON: Extra data (column 10)")
    assert got[4][:2] == ("Reject", 5) and got[4][2].startswith("malformed JSON: Unterminated")


def test_jsonl_mixed_encodings_bom_and_a_one_megabyte_line(tmp_path):
    data = (b'\xef\xbb\xbf{"text": "bom"}\n{"text": "caf\xe9"}\n{"text": "'
            + MB.encode() + b'"}\n')
    got = items(tmp_path, "m.jsonl", data, "jsonl")
    assert got[0] == ("Record", 1, "bom") and got[2] == ("Record", 3, MB)
    assert got[1] == ("Reject", 2, "invalid UTF-8 at byte 14 of the line")


def test_text_lines(tmp_path):
    data = b"one\r\ntwo\rstill two\n\n\xff\xfe bad\nlast without newline"
    got = items(tmp_path, "t.txt", data, "text")
    assert got[0] == ("Record", 1, "one") and got[1] == ("Record", 2, "two\rstill two")
    assert got[2][:2] == ("Reject", 4) and got[3] == ("Record", 5, "last without newline")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
@pytest.mark.parametrize("fmt", ["text", "jsonl", "csv"])
def test_utf16_and_utf32_inputs_are_refused(tmp_path, fmt, encoding):
    data = '{"text": "a"}\n'.encode(encoding) if fmt == "jsonl" else "text\nä\n".encode(encoding)
    message = error(tmp_path, f"in.{fmt}", data, fmt)
    assert f"is {encoding.upper()} text (it starts with a {encoding.upper()} byte-order mark)" \
        in message


def test_a_truncated_gzip_input_is_an_error(tmp_path):
    data = gzip.compress(b"".join(b'{"text": "row %d"}\n' % i for i in range(5000)))
    message = error(tmp_path, "t.jsonl.gz", data[: len(data) // 2], "jsonl")
    assert "cannot read further" in message


# --- Parquet --------------------------------------------------------------------------

def test_parquet_truncated_and_bad_values(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"text": ["a", None, MB]}), path)
    got = items(tmp_path, "p.parquet", path.read_bytes(), "parquet")
    assert got[0] == ("Record", 1, "a") and got[2] == ("Record", 3, MB)
    assert got[1] == ("Reject", 2, "text field 'text' is null, not a string")
    message = error(tmp_path, "cut.parquet", path.read_bytes()[:-20], "parquet")
    assert "is not a readable Parquet file" in message


def test_rejections_are_rows(tmp_path):
    """Rows in = records + rejections, for a file with every kind of bad line."""
    data = b'{"text": "a"}\n{bad\n\n["x"]\n{"text": 1}\n{"t": "x"}\n\xff\n{"text": "z"}\n'
    got = items(tmp_path, "all.jsonl", data, "jsonl")
    assert [g[0] for g in got] == ["Record", "Reject", "Reject", "Reject", "Reject", "Reject",
                                   "Record"]
    assert [g[1] for g in got] == [1, 2, 4, 5, 6, 7, 8]
    assert all(isinstance(r, (Record, Reject)) for r in Reader(str(tmp_path / "all.jsonl"),
                                                               "jsonl", FieldSpec()))
