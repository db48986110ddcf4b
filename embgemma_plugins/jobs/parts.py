"""One finished chunk of a run on disk, written and read without pyarrow.

A part holds a chunk's rows exactly as the output will: ids, kept fields and the
embeddings already at the output precision. It is an uncompressed ``.npz`` with four
members: ``embedding`` (``rows x width``), ``ids`` and ``keep`` (UTF-8 JSON of the ids and
of the kept columns, apart so that the id scan never parses kept text) and ``stats``
(UTF-8 JSON of the chunk's counts and input digest). Each reader loads only its members.
A run writing one row per chunk of text (``--chunk-tokens``) adds ``spans`` (``rows x 3``
int64: chunk index, start, end) and, with ``--keep-text``, ``texts`` (UTF-8 JSON).

Why not Parquet: pyarrow is the largest library the CLI loads (32 MB of resident memory
at import, VmRSS before and after `import pyarrow`), and writing parts is all the
embedding phase needed it for. With parts in NumPy's own format, pyarrow is imported
only to assemble the final file, after the model's session has been dropped, so the two
never add up.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PART_SUFFIX = ".npz"


@dataclass(frozen=True)
class Part:
    """A chunk's output rows: ``ids``, one list per kept field, quantised embeddings."""

    ids: list[Any]  # int row numbers, or the --id-field strings
    keep: list[list[str | None]]
    embedding: np.ndarray  # (rows, width) at the output precision
    spans: np.ndarray | None = None  # (rows, 3) int64: chunk index, start, end (chunk rows)
    texts: list[str] | None = None  # the chunks' text (--keep-text)


def _json_bytes(value: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(value, ensure_ascii=False).encode(), dtype=np.uint8)


def _from_json(member: np.ndarray) -> Any:
    return json.loads(member.tobytes().decode())


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Name ``path`` in an ``OSError`` raised while it is written (a write into a full disk
    says only "No space left on device")."""
    try:
        yield
    except OSError as e:
        if e.filename is None:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


def write_part(path: Path, part: Part, stats: Mapping[str, Any]) -> None:
    """Write ``part`` to ``path`` atomically: a temporary name, fsync, rename."""
    tmp = path.with_name(path.name + ".tmp")
    with writing(tmp), open(tmp, "wb") as f:
        members: dict[str, Any] = {
            "embedding": part.embedding,
            "ids": _json_bytes(part.ids),
            "keep": _json_bytes(part.keep),
            "stats": _json_bytes(dict(stats)),
        }
        if part.spans is not None:
            members["spans"] = part.spans.astype(np.int64)
        if part.texts is not None:
            members["texts"] = _json_bytes(part.texts)
        np.savez(f, **members)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_stats(path: Path) -> dict[str, Any] | None:
    """The stats a part was written with; ``None`` if it is unreadable (a torn or
    foreign file is then simply redone)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            stats = _from_json(z["stats"])
    except (OSError, KeyError, ValueError, EOFError):
        return None
    return stats if isinstance(stats, dict) else None


def read_ids(path: Path) -> tuple[list[Any], int]:
    """The ids that start a document (every row's, or a chunk-row part's first chunks'),
    and the part's row count."""
    with np.load(path, allow_pickle=False) as z:
        ids = list(_from_json(z["ids"]))
        if "spans" not in z.files:
            return ids, len(ids)
        first = z["spans"][:, 0] == 0
        return [i for i, f in zip(ids, first.tolist(), strict=True) if f], len(ids)


def read_embedding(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as z:
        return np.asarray(z["embedding"])


def read_part(path: Path) -> Part:
    with np.load(path, allow_pickle=False) as z:
        keep = [list(c) for c in _from_json(z["keep"])]
        spans = np.asarray(z["spans"]) if "spans" in z.files else None
        texts = list(_from_json(z["texts"])) if "texts" in z.files else None
        return Part(list(_from_json(z["ids"])), keep, z["embedding"], spans, texts)
