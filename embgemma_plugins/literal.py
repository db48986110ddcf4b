"""User text stays text: no substring of it becomes a control or user-defined token.

SentencePiece never produces a CONTROL piece (``<pad>``, ``<eos>``, ``<bos>``) from text, but it
cuts out a USER_DEFINED piece wherever the piece's string occurs.  Gemma's vocabulary has
6,410 of them: 92 runs of newlines, tabs or spaces and 68 HTML tags (``<table>``, ``</td>``),
which are ordinary text (kept as they are, so ids of ordinary text and web pages do not
change), and 6,250 that mean something else to the model: ``<mask>`` (4), ``[multimodal]``,
``<start_of_turn>`` (105), ``<end_of_turn>`` (106), ``<bbox>``, ``</bbox>``,
``<start_of_image>`` (255999), ``<end_of_image>`` and 6,242 ``<unusedN>`` whose embeddings
were never trained.  :class:`Literal` finds every place in a
text where one of those begins and encodes the text in runs that no such string can span
(the string's first character alone, then the rest), so the model sees the characters,
exactly what the text says.

The Python API of sentencepiece does not expose a piece's type, and parsing the model with
protobuf costs about 0.4 s per load (measured on the real vocabulary); so the serialized
model is searched for the bytes that end a USER_DEFINED piece's record (``type`` = 4), and
each string found is confirmed with SentencePiece's own ``piece_to_id``.  The tests compare
the result with protobuf's reading of the tiny and the real vocabularies.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

_TYPE_USER_DEFINED = re.compile(rb"\x18\x04")  # field 3 (type), varint 4 (USER_DEFINED)
_SCORE = 0x15  # field 2 (score), 32-bit float
_STRING = 0x0A  # field 1 (piece; and ModelProto's repeated field 1, the pieces)


def _piece_before(model: bytes, end: int) -> bytes | None:
    """The piece string of the SentencePiece record whose ``type`` field starts at ``end``:
    the record is ``0A len 0A size <size bytes> [15 <4-byte score>] 18 04``."""
    for extra in (5, 0):  # with a score field, or without one
        body = end - extra
        if extra and (body < 0 or model[body] != _SCORE):
            continue
        for size in range(1, min(119, body - 3)):
            start = body - size
            if (model[start - 1] == size and model[start - 2] == _STRING
                    and model[start - 3] == size + 4 + extra and model[start - 4] == _STRING):
                return model[start:body]
    return None


def user_defined(model: bytes) -> set[str]:
    """Strings of the USER_DEFINED pieces of a serialized SentencePiece model (pieces up to
    118 bytes: a record whose length fits one varint byte)."""
    found: set[str] = set()
    for hit in _TYPE_USER_DEFINED.finditer(model):
        piece = _piece_before(model, hit.start())
        if piece is not None:
            with contextlib.suppress(UnicodeDecodeError):
                found.add(piece.decode("utf-8"))
    return found


#: HTML elements Gemma's vocabulary holds as pieces: web text the model was trained on.
MARKUP = frozenset({
    "a", "b", "blockquote", "body", "caption", "code", "div", "em", "footer", "h1", "h2", "h3",
    "h4", "h5", "h6", "html", "i", "iframe", "img", "li", "s", "span", "strong", "sub", "sup",
    "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul",
})
_TAG = re.compile(r"</?([a-z][a-z0-9]*)>")


def is_text(piece: str) -> bool:
    """A user-defined piece that is ordinary text: a run of whitespace (``▁`` is a space),
    or an HTML tag such as ``<table>`` or ``</td>``, which stays the model's own piece, as
    Hugging Face's tokenizer reads it (read as characters, a page of markup moved to
    cosine 0.89 of its reference vector)."""
    plain = piece.replace("\u2581", " ")
    tag = _TAG.fullmatch(plain)
    return plain.isspace() or (tag is not None and tag.group(1) in MARKUP)


class Literal:
    """Encodes texts so that no substring becomes a protected (non-text) piece."""

    def __init__(self, sp: Any, model: bytes) -> None:
        """``sp``: the SentencePieceProcessor of ``model`` (the serialized model)."""
        self._sp = sp
        found = sorted(user_defined(model))
        ids = sp.piece_to_id(found) if found else []
        confirmed = sp.id_to_piece(ids) if found else []
        pieces = {p: i for p, i, q in zip(found, ids, confirmed, strict=True)
                  if p == q and not is_text(p)}
        self.ids = frozenset(pieces.values())
        self.strings = frozenset(p.replace("\u2581", " ") for p in pieces)
        self._lengths = sorted({len(s) for s in self.strings}, reverse=True)
        # A quick look at two characters first: "<t" may begin "<table>", "a < b" may not.
        self._heads = {s[:2] for s in self.strings if len(s) > 1}
        self._singles = {s for s in self.strings if len(s) == 1}
        firsts = "".join(sorted({re.escape(s[0]) for s in self.strings}))
        self._starts = re.compile(f"[{firsts}]") if firsts else None

    def cuts(self, text: str) -> list[int]:
        """Every position of ``text`` where a protected string begins."""
        if self._starts is None or self._starts.search(text) is None:
            return []
        return [i for i in (m.start() for m in self._starts.finditer(text))
                if (text[i] in self._singles or text[i:i + 2] in self._heads)
                and any(text[i:i + n] in self.strings for n in self._lengths)]

    def encode(self, text: str, cuts: list[int]) -> list[int]:
        """Ids of ``text``, encoded in runs that end before each of ``cuts`` and restart
        one character after it (that character is encoded on its own)."""
        runs, at = [], 0
        for cut in cuts:
            runs += [text[at:cut], text[cut]] if at < cut else [text[cut]]
            at = cut + 1
        runs.append(text[at:])
        ids: list[int] = []
        for run in filter(None, runs):
            ids += self._bytes(run) if run in self.strings else self._sp.encode(run)
        return ids

    def _bytes(self, char: str) -> list[int]:
        """A one-character protected piece as its UTF-8 bytes (byte-fallback pieces)."""
        return [self._sp.piece_to_id(f"<0x{b:02X}>") for b in char.encode("utf-8")]
