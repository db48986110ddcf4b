"""The output's Arrow schema, its rows, and the file-level metadata that traces it.

Shared by every engine so that all of them write the same file:

- ``id``: ``int64`` (the row number) or ``string`` (``--id-field``);
- with ``--chunk-tokens`` (one row per chunk of a text): ``chunk`` (``int32``, from 0),
  ``start`` and ``end`` (``int64`` character offsets into the text: Python ``str``
  indices, i.e. Unicode code points), and with ``--keep-text`` the chunk's ``text``;
- one nullable ``string`` column per ``--keep`` field, in the order given;
- ``embedding``: ``fixed_size_list<float32>[dimensions]``, or the quantised type of
  ``--precision`` (see :mod:`.quantise`);
- schema metadata key ``embgemma``: JSON describing model, revision, variant,
  dimensions, prompt, precision and calibration, package version, input, counts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embgemma_plugins.chunking import Chunk
from embgemma_plugins.jobs.parts import Part
from embgemma_plugins.jobs.quantise import Ranges, arrow_embedding, quantise, value_type, width
from embgemma_plugins.jobs.records import FieldSpec, Record

if TYPE_CHECKING:  # imported where Arrow data is built: not while the model runs
    import pyarrow as pa

METADATA_KEY = b"embgemma"
METADATA_FORMAT = 1


@dataclass(frozen=True)
class Layout:
    """What decides the output's columns."""

    spec: FieldSpec
    dimensions: int
    precision: str = "float32"
    chunked: bool = False  # one row per chunk of a text: chunk, start, end columns
    keep_text: bool = False  # and the chunk's text

    def schema(self, metadata: Mapping[str, Any] | None = None) -> pa.Schema:
        import pyarrow as pa

        embedding = pa.list_(value_type(self.precision), width(self.precision, self.dimensions))
        fields = [pa.field("id", pa.string() if self.spec.id else pa.int64(), nullable=False)]
        if self.chunked:
            fields += [pa.field("chunk", pa.int32(), nullable=False),
                       pa.field("start", pa.int64(), nullable=False),
                       pa.field("end", pa.int64(), nullable=False)]
            fields += [pa.field("text", pa.string(), nullable=False)] if self.keep_text else []
        fields += [pa.field(name, pa.string()) for name in self.spec.keep]
        fields.append(pa.field("embedding", embedding, nullable=False))
        meta = {METADATA_KEY: encode_metadata(metadata)} if metadata is not None else None
        return pa.schema(fields, metadata=meta)

    def part(
        self, records: Sequence[Record], vectors: np.ndarray, ranges: Ranges | None = None,
        chunks: Sequence[tuple[int, Chunk]] | None = None,
    ) -> Part:
        """The rows of ``records`` with their float32 ``vectors`` at this precision; with
        ``chunks`` (record index, chunk), one row per chunk instead."""
        rows = records if chunks is None else [records[i] for i, _ in chunks]
        keep = [[r.keep[k] for r in rows] for k in range(len(self.spec.keep))]
        embedding = quantise(vectors, self.precision, ranges)
        if chunks is None:
            return Part([r.id for r in rows], keep, embedding)
        spans = np.array([[c.index, c.start, c.end] for _, c in chunks], dtype=np.int64)
        texts = [c.text for _, c in chunks] if self.keep_text else None
        return Part([r.id for r in rows], keep, embedding, spans.reshape(-1, 3), texts)

    def arrow(self, part: Part) -> pa.Table:
        """``part`` as a table of this layout's schema (no file metadata)."""
        import pyarrow as pa

        schema = self.schema()
        columns: list[pa.Array] = [pa.array(part.ids, type=schema.field(0).type)]
        if self.chunked:
            spans = part.spans if part.spans is not None else np.zeros((0, 3), np.int64)
            columns += [pa.array(spans[:, 0].astype(np.int32)), pa.array(spans[:, 1]),
                        pa.array(spans[:, 2])]
            columns += [pa.array(part.texts or [], type=pa.string())] if self.keep_text else []
        columns += [pa.array(values, type=pa.string()) for values in part.keep]
        columns.append(arrow_embedding(part.embedding, self.precision))
        return pa.Table.from_arrays(columns, schema=schema)

    def table(
        self, records: Sequence[Record], vectors: np.ndarray, ranges: Ranges | None = None
    ) -> pa.Table:
        """The rows of ``records`` with their float32 ``vectors``, as an Arrow table."""
        return self.arrow(self.part(records, vectors, ranges))


def write_options(schema: pa.Schema) -> dict[str, Any]:
    """Parquet writer options: no dictionary or statistics for the embedding column
    (dictionary-encoding floats made writes 6x slower and files 40% larger)."""
    names = [n for n in schema.names if n != "embedding"]
    return {"use_dictionary": names, "write_statistics": names}


def encode_metadata(metadata: Mapping[str, Any]) -> bytes:
    """Canonical JSON (sorted keys) so equal runs write byte-equal files."""
    body = {"format": METADATA_FORMAT, **metadata}
    return json.dumps(body, sort_keys=True, ensure_ascii=False).encode()


def describe_run(
    *,
    model: str,
    revision: str | None,
    variant: str,
    dimensions: int,
    prompt: str,
    spec: FieldSpec,
    precision: str,
    calibration: Mapping[str, Any] | None,
    max_length: int,
    input_path: str,
    input_format: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The file-level metadata of a run (counts go in ``extra`` once known)."""
    from embgemma_plugins import __version__

    return {
        "package": "embgemma-plugins",
        "package_version": __version__,
        "model": model,
        "model_revision": revision,
        "variant": variant,
        "dimensions": dimensions,
        "prompt": prompt,
        "text_field": spec.text,
        "id_field": spec.id,
        "title_field": spec.title,
        "keep": list(spec.keep),
        "precision": precision,
        "calibration": dict(calibration) if calibration is not None else None,
        "max_length": max_length,
        "input": {"path": input_path, "format": input_format},
        **(extra or {}),
    }


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``embgemma`` metadata of an output Parquet file (``{}`` if it has none)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(METADATA_KEY)
    return dict(json.loads(raw)) if raw else {}
