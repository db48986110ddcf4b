"""The cases of scripts/stress.py: inputs built to break the readers, and misuse.

Each case writes its input, runs ``embgemma embed``, follows the message of a run that
stops (fixing what it names), and counts rows with ``ctx.count``.  Cases that need
processes, signals, disks or the model store are in stress_runs.py.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from stress import Ctx
from stress_runs import RUNS

WORDS = ["alpha", "beta", "gamma", "delta", "search", "vector", "planet", "mars", "red",
         "river", "stone"]


def texts(n: int, tag: str = "doc") -> list[str]:
    return [f"{tag} {i}: " + " ".join(WORDS[(i + k) % len(WORDS)] for k in range(i % 9 + 1))
            for i in range(n)]


def jsonl(path: Path, rows: list[str], bad: dict[int, str] | None = None) -> Path:
    lines = [json.dumps({"id": f"r{i}", "text": t}) for i, t in enumerate(rows)]
    for i, line in (bad or {}).items():
        lines[i] = line
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def unclosed_quote(quoted: bool) -> Callable[[Ctx], None]:
    """Row 25 loses its closing quote; the rows after it are quoted (the next quote breaks
    the record) or not (the field would run to the end of the file)."""
    def case(ctx: Ctx) -> None:
        src = ctx.folder / "in.csv"
        rows = [f'"{t}"' if quoted else t for t in texts(40)]
        lines = ["id,text", *(f"r{i},{t}" for i, t in enumerate(rows))]
        lines[26] = f'r25,"{texts(40)[25]}'
        src.write_text("\n".join(lines) + "\n")
        out = ctx.folder / "out.parquet"
        code, err = ctx.embed(src, out, "--chunk-rows", "8", "--id-field", "id")
        said = ("line 27: malformed CSV in the record on lines 27-28 (a quote opened on line 27)"
                if quoted else "line 27: a quoted field opened on this line is still open")
        ctx.expect(code == 1 and said in err, err)
        lines[26] += '"'
        src.write_text("\n".join(lines) + "\n")
        ctx.embed(src, out, "--chunk-rows", "8", "--id-field", "id", "--resume")
        ctx.outcome.story = "stops naming line 27; quote closed, --resume"
        ctx.outcome.rows_in = 40
        ctx.count(out)
    return case


def doubled_column(ctx: Ctx) -> None:
    src = ctx.folder / "in.csv"
    src.write_text("id,text,text\n" + "".join(f"r{i},{t},x\n" for i, t in enumerate(texts(20))))
    out = ctx.folder / "out.parquet"
    code, err = ctx.embed(src, out)
    ctx.expect(code == 1 and "names column 'text' 2 times (columns 2, 3)" in err, err)
    src.write_text(src.read_text().replace("id,text,text", "id,text,note", 1))
    ctx.embed(src, out)
    ctx.outcome.story, ctx.outcome.rows_in = "refused; column renamed, rerun", 20
    ctx.count(out)


def rejects_is_input(ctx: Ctx) -> None:
    src = jsonl(ctx.folder / "in.jsonl", texts(30), {4: "{bad", 9: '{"text": 9}'})
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    out = ctx.folder / "out.parquet"
    code, err = ctx.embed(src, out, "--on-error", "skip", "--rejects", str(src), "--overwrite")
    ctx.expect(code == 2 and "is the input file" in err, err)
    ctx.expect(hashlib.sha256(src.read_bytes()).hexdigest() == digest, "input changed")
    ctx.embed(src, out, "--on-error", "skip")
    ctx.outcome.story, ctx.outcome.rows_in = "usage error, input intact; default rejects", 30
    ctx.count(out)


def existing_rejects(ctx: Ctx) -> None:
    src = jsonl(ctx.folder / "in.jsonl", texts(30), {0: "[]"})
    keep = ctx.folder / "precious.jsonl"
    keep.write_text("precious\n")
    out = ctx.folder / "out.parquet"
    code, err = ctx.embed(src, out, "--on-error", "skip", "--rejects", str(keep))
    ctx.expect(code == 2 and keep.read_text() == "precious\n", err)
    ctx.embed(src, out, "--on-error", "skip", "--rejects", str(keep), "--overwrite")
    ctx.outcome.story, ctx.outcome.rows_in = "refused without --overwrite, then replaced", 30
    ctx.count(out, keep)


def npy_skipped(ctx: Ctx) -> None:
    import numpy as np

    bad = {3: "{", 17: '{"text": null}', 18: '{"text": []}', 33: "no json", 49: "1"}
    src = jsonl(ctx.folder / "in.jsonl", texts(50), bad)
    out = ctx.folder / "out.npy"
    code, err = ctx.embed(src, out, "--on-error", "skip", "--chunk-rows", "16")
    ctx.expect(code == 0 and "5 row(s) were skipped, so vector i" in err, err)
    row_map = ctx.folder / "out.npy.rows.npy"
    rows = np.load(row_map).tolist() if row_map.exists() else []
    ctx.expect(sorted(set(range(50)) - set(rows)) == sorted(bad),
               "no row map: vector i is not input row i" if not rows else "a wrong row map")
    ctx.outcome.story, ctx.outcome.rows_in = "OUT.rows.npy maps the 45 vectors", 50
    ctx.count(out)


def control_tokens(ctx: Ctx) -> None:
    from sentencepiece import sentencepiece_model_pb2 as pb

    from embgemma_plugins.literal import is_text
    from embgemma_plugins.tokenizer import Tokenizer

    specials = ["<start_of_turn>", "<end_of_turn>", "<mask>", "<start_of_image>", "<bos>",
                "<eos>", "<pad>", "<unk>", "[multimodal]", "<unused17>"]
    rows = [f"user {i} says {s} then {s[::-1]}" for i, s in enumerate(specials * 3)]
    src = jsonl(ctx.folder / "in.jsonl", rows)
    out = ctx.folder / "out.parquet"
    ctx.embed(src, out)
    model = pb.ModelProto()  # type: ignore[attr-defined]  # generated protobuf module
    model.ParseFromString((ctx.model / "tokenizer.model").read_bytes())
    banned = {i for i, p in enumerate(model.pieces) if p.type in (2, 3)
              or (p.type == 4 and not is_text(p.piece))}
    ids = {int(i) for x in Tokenizer(ctx.model / "tokenizer.model").encode(rows, 2048).ids
           for i in x[1:-1]}
    ctx.expect(not ids & banned, f"control ids in user text: {sorted(ids & banned)}")
    ctx.outcome.story, ctx.outcome.rows_in = "no control id in any row's ids", len(rows)
    ctx.count(out)


def on_long_error(ctx: Ctx) -> None:
    rows = texts(30)
    rows[20] = "very long " * 100
    src = jsonl(ctx.folder / "in.jsonl", rows)
    out = ctx.folder / "out.parquet"
    args = ["--chunk-rows", "8", "--max-length", "64", "--on-long", "error"]
    code, err = ctx.embed(src, out, *args)
    ctx.expect(code == 1 and "--resume --on-long truncate" in err
               and "--on-error skip" not in err, err)
    ctx.embed(src, out, *args, "--resume", "--on-long", "truncate")
    ctx.outcome.story, ctx.outcome.rows_in = "stops; the hint (--resume --on-long truncate)", 30
    ctx.count(out)


def bad_row_error(ctx: Ctx) -> None:
    src = jsonl(ctx.folder / "in.jsonl", texts(40), {25: '{"text": 25}', 31: "{"})
    out = ctx.folder / "out.parquet"
    code, err = ctx.embed(src, out, "--chunk-rows", "8")
    ctx.expect(code == 1 and "3 finished chunk(s) are kept" in err, err)
    ctx.embed(src, out, "--chunk-rows", "8", "--resume", "--on-error", "skip")
    ctx.outcome.story, ctx.outcome.rows_in = "stops; the hint (--resume --on-error skip)", 40
    ctx.count(out)


def missing_column(ctx: Ctx) -> None:
    src = ctx.folder / "in.csv"
    src.write_text("id,body\n" + "".join(f"r{i},{t}\n" for i, t in enumerate(texts(25))))
    out = ctx.folder / "out.parquet"
    code, err = ctx.embed(src, out, "--dim", "256")
    ctx.expect(code == 1 and "has no column 'text'" in err, err)
    ctx.embed(src, out, "--text-field", "body")  # other options: not "an interrupted run"
    ctx.outcome.story, ctx.outcome.rows_in = "named; rerun with other options just runs", 25
    ctx.count(out)


def reader_case(name: str, data: bytes, rows: int, story: str, *extra: str
                ) -> Callable[[Ctx], None]:
    def case(ctx: Ctx) -> None:
        src = ctx.folder / name
        src.write_bytes(data)
        out = ctx.folder / "out.parquet"
        ctx.embed(src, out, "--on-error", "skip", "--max-length", "256", *extra)
        ctx.outcome.story, ctx.outcome.rows_in = story, rows
        ctx.count(out)
    return case


def utf16(ctx: Ctx) -> None:
    src = ctx.folder / "in.txt"
    src.write_bytes("\n".join(texts(12, "ünïcode")).encode("utf-16"))
    out = ctx.folder / "out.parquet"
    code, err = ctx.embed(src, out)
    ctx.expect(code == 1 and "is UTF-16 text" in err, err)
    src.write_bytes(src.read_bytes().decode("utf-16").encode("utf-8"))
    ctx.embed(src, out)
    ctx.outcome.story, ctx.outcome.rows_in = "refused by its BOM; converted, rerun", 12
    ctx.count(out)


def truncated_gzip(ctx: Ctx) -> None:
    full = "".join(json.dumps({"text": t}) + "\n" for t in texts(3000)).encode()
    src = ctx.folder / "in.jsonl.gz"
    packed = gzip.compress(full)
    src.write_bytes(packed[: len(packed) * 2 // 3])
    out = ctx.folder / "out.parquet"
    code, err = ctx.embed(src, out, "--chunk-rows", "500")
    ctx.expect(code == 1 and "cannot read further" in err, err)
    src.write_bytes(packed)
    ctx.embed(src, out, "--chunk-rows", "500", "--resume")
    ctx.outcome.story, ctx.outcome.rows_in = "stops; whole file, --resume", 3000
    ctx.count(out)


def out_is_input(ctx: Ctx) -> None:
    src = jsonl(ctx.folder / "in.jsonl", texts(10))
    out = ctx.folder / "in.parquet"
    ctx.embed(src, out, "--keep", "text")
    code, err = ctx.embed(out, out, "--overwrite")
    ctx.expect(code == 2 and "OUT is the input file" in err, err)
    ctx.outcome.story, ctx.outcome.rows_in = "usage error, the Parquet input intact", 10
    ctx.count(out)


def input_grows(ctx: Ctx) -> None:
    rows = texts(30)
    src = jsonl(ctx.folder / "in.jsonl", rows, {28: "{"})
    out = ctx.folder / "out.parquet"
    ctx.embed(src, out, "--chunk-rows", "8", "--id-field", "id")
    jsonl(src, texts(50))
    code, err = ctx.embed(src, out, "--chunk-rows", "8", "--id-field", "id", "--resume")
    ctx.expect(code == 0 and "24 from the interrupted run" in err, err)
    ctx.outcome.story, ctx.outcome.rows_in = "row fixed and 20 rows added before --resume", 50
    ctx.count(out)


def parquet_input(ctx: Ctx) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = ctx.folder / "in.parquet"
    pq.write_table(pa.table({"text": ["a", None, "c", "d", ""]}), src)
    out = ctx.folder / "out.parquet"
    ctx.embed(src, out, "--on-error", "skip")
    ctx.outcome.story, ctx.outcome.rows_in = "a null text rejected, empty text kept", 5
    ctx.count(out)



MB = "y" * (1 << 20)
CASES: dict[str, Callable[[Ctx], None]] = {
    "unclosed-quote-to-eof-csv": unclosed_quote(quoted=False),
    "unclosed-quote-then-quotes-csv": unclosed_quote(quoted=True),
    "doubled-csv-column": doubled_column,
    "missing-csv-column": missing_column,
    "rejects-is-the-input": rejects_is_input,
    "rejects-file-exists": existing_rejects,
    "out-is-the-input": out_is_input,
    "npy-with-skipped-rows": npy_skipped,
    "control-tokens-in-text": control_tokens,
    "on-long-error-hint": on_long_error,
    "bad-row-error-hint": bad_row_error,
    "input-fixed-and-grown": input_grows,
    "utf16-input": utf16,
    "truncated-gzip": truncated_gzip,
    "mixed-encodings-jsonl": reader_case(
        "in.jsonl", b'{"text": "caf\xc3\xa9"}\n{"text": "caf\xe9"}\n\xef\xbb\xbf{"text": "x"}\n'
        b'{"text": "\xe6\x97\xa5\xe6\x9c\xac"}\n', 4, "latin-1 line and a stray BOM rejected"),
    "lone-cr-csv": reader_case("in.csv", b'id,text\na,one\rtwo\nb,"q\rq"\nc,three\r\n', 3,
                               "unquoted CR rejected, quoted CR kept"),
    "truncated-last-line": reader_case(
        "in.jsonl", b'{"text": "a"}\n{"text": "b"}\n{"text": "c', 3, "cut line rejected"),
    "header-only-csv": reader_case("in.csv", b"id,text\n", 0, "an empty output"),
    "empty-input": reader_case("in.jsonl", b"\n\n  \n", 0, "blank lines are not rows"),
    "one-megabyte-fields": reader_case(
        "in.csv", b'id,text\na,"' + MB.encode() + b'"\nb,' + MB.encode() + b"\nc,short\n", 3,
        "two 1 MB texts, truncated"),
    "blank-and-whitespace-lines": reader_case(
        "in.txt", b"one\n\n   \n\ttab\n\nlast", 3, "blank lines (spaces only) are not rows"),
    "parquet-null-and-empty": parquet_input,
    "gzip-csv-bom-multiline": reader_case(
        "in.csv.gz", gzip.compress(b'\xef\xbb\xbfid,text\na,"two\nlines"\nb,"say ""hi"""\n'),
        2, "gzip, BOM, quoted newline and quotes"),
    "duplicate-ids": reader_case(
        "in.jsonl", b'{"id": "x", "text": "a"}\n{"id": "x", "text": "b"}\n', 2,
        "warned, both kept", "--id-field", "id"),
    **RUNS,
}
