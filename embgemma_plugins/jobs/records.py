"""From an input row to the record that gets embedded, or the reason it cannot be.

Pure functions, shared by every engine (the local ``embgemma embed`` loop and the
Ray Data engine): the same row always gives the same record or the same rejection
message, so outputs and rejects files agree whichever engine wrote them.

Rules:

- the text field must be present and a string (an empty string is a valid text);
- with an id field, ids are strings (JSON integers become their decimal text);
  without one, the id is the row number (0-based, rejected rows included);
- the title field may be missing or null (the document prompt then says ``none``);
- kept fields keep strings as they are; other JSON values (numbers, booleans,
  objects, arrays) are written as their JSON text; missing or null is null.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Names of the output's own columns; a kept field may not take them.
RESERVED = ("id", "embedding")


@dataclass(frozen=True)
class FieldSpec:
    """Which input fields hold the text, id, title and the columns to carry along."""

    text: str = "text"
    id: str | None = None
    title: str | None = None
    keep: tuple[str, ...] = ()

    def check(self) -> list[str]:
        """Problems with the spec itself (empty list when it is usable)."""
        problems = []
        for name in self.keep:
            if name in RESERVED:
                problems.append(f"--keep {name}: '{name}' is a column of the output already")
        if len(set(self.keep)) != len(self.keep):
            problems.append("--keep names a field twice")
        return problems

    def columns(self) -> list[str]:
        """The input fields a reader must provide, without duplicates, text first."""
        names = [self.text, self.id, self.title, *self.keep]
        return list(dict.fromkeys(n for n in names if n is not None))


@dataclass(frozen=True)
class Record:
    """One row ready to embed."""

    row: int
    id: str | int
    text: str
    title: str | None = None
    keep: tuple[Any, ...] = field(default=())
    line: int = 0


@dataclass(frozen=True)
class Reject:
    """One row that cannot be embedded; ``line`` is where it starts in the input. With
    ``embedded``, a row that was embedded but not whole (truncated): a note, not a loss."""

    row: int
    line: int
    reason: str
    raw: str | None = None
    embedded: bool = False


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {str: "a string", bool: "a boolean", int: "a number", float: "a number",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


def keep_value(value: Any) -> Any:
    """A kept JSON/CSV value as it is written: strings as is, null as null, else JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def extract(
    data: Mapping[str, Any], spec: FieldSpec, row: int, line: int, raw: str | None = None
) -> Record | Reject:
    """The record of one parsed row (a mapping of field name to value)."""

    def reject(reason: str) -> Reject:
        return Reject(row, line, reason, raw)

    if spec.text not in data:
        fields = ", ".join(sorted(map(str, data))) or "none"
        return reject(f"missing text field '{spec.text}' (fields: {fields})")
    text = data[spec.text]
    if not isinstance(text, str):
        return reject(f"text field '{spec.text}' is {_kind(text)}, not a string")
    ident: str | int = row
    if spec.id is not None:
        value = data.get(spec.id)
        if isinstance(value, str):
            ident = value
        elif isinstance(value, int) and not isinstance(value, bool):
            ident = str(value)
        elif spec.id not in data:
            return reject(f"missing id field '{spec.id}'")
        else:
            return reject(f"id field '{spec.id}' is {_kind(value)}, not a string or integer")
    title = None
    if spec.title is not None:
        value = data.get(spec.title)
        if value is not None and not isinstance(value, str):
            return reject(f"title field '{spec.title}' is {_kind(value)}, not a string")
        title = value
    kept = tuple(keep_value(data.get(name)) for name in spec.keep)
    return Record(row, ident, text, title, kept, line)


def from_json_line(line_text: str, spec: FieldSpec, row: int, line: int) -> Record | Reject:
    """Parse one JSONL line (already decoded) into a record or a rejection."""
    try:
        data = json.loads(line_text)
    except json.JSONDecodeError as e:
        return Reject(row, line, f"malformed JSON: {e.msg} (column {e.colno})", line_text)
    if not isinstance(data, dict):
        return Reject(row, line, f"a JSON line must be an object, not {_kind(data)}", line_text)
    return extract(data, spec, row, line, line_text)


def from_csv_row(
    values: Sequence[str], header: Sequence[str], spec: FieldSpec, row: int, line: int, raw: str
) -> Record | Reject:
    """One CSV record (a list of cells) against the header; ragged rows are rejected."""
    if len(values) != len(header):
        return Reject(
            row, line, f"ragged CSV row: {len(values)} fields, the header has {len(header)}", raw
        )
    return extract(dict(zip(header, values, strict=True)), spec, row, line, raw)
