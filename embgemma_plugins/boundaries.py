"""Where a chunk of text may begin or end, and how good a place it is.

Pure functions over a ``str``: every candidate position gets a level, higher is better:

====  ==========  ==============================================================
 4    paragraph   after a blank line (the position after its last newline, so an
                  indented paragraph or code block keeps its indentation)
 3    sentence    after . ! ? and the like (and closing quotes or brackets) and
                  whitespace; after the ideographic and fullwidth full stops, question
                  and exclamation marks (CJK), the Arabic question mark and full stop,
                  the Devanagari danda, the Armenian, Ethiopic and Myanmar full stops,
                  with or without whitespace
 2    line        after a newline (code: a line keeps its indentation)
 1    word        where a run of whitespace ends; after an ideographic or fullwidth
                  comma, semicolon or colon
 0    piece       where a token begins (CJK without spaces, very long words)
-1    grapheme    where a token begins inside a grapheme cluster (a combining mark,
                  a variation selector, a joiner): the last resort
====  ==========  ==============================================================

Whitespace between two units therefore ends the earlier chunk, and a chunk begins with
its first word (or with a code line's indentation).
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

PARAGRAPH, SENTENCE, LINE, WORD, PIECE, GRAPHEME = 4, 3, 2, 1, 0, -1

# Closing quotes and brackets a sentence may end in: ASCII, typographic, CJK corner and
# fullwidth ones (escaped: several look like ASCII).
_CLOSERS = (
    "\"')\\]}\u00bb\u203a\u2019\u201d\u300d\u300f\uff09\u3011\u3009\u300b\u3015\u3017\u3019\u301b"
    "\uff3d\uff5d"
)
# . ! ? ellipsis, double !/?, Greek question mark: need whitespace after them.
_SPACED_END = re.compile(rf"[.!?\u2026\u203c\u2047\u2048\u2049\u037e][{_CLOSERS}]*\s+")
# Ideographic full stop; fullwidth ! ? . ; halfwidth ideographic full stop; Arabic ? and full
# stop; Devanagari danda and double danda; Armenian, Ethiopic, Myanmar full stops.
_UNSPACED_END = re.compile(
    rf"[\u3002\uff01\uff1f\uff0e\uff61\u061f\u06d4\u0964\u0965\u0589\u1362\u104b][{_CLOSERS}]*\s*"
)
# Ideographic comma; fullwidth comma, semicolon, colon.
_CJK_PAUSE = re.compile(r"[\u3001\uff0c\uff1b\uff1a]\s*")
_SPACE_RUN = re.compile(r"\s+")
_NEWLINES = "\n\u2028\u2029"  # \r\n ends in \n; a lone \r is not a line break here
_JOINERS = {"\u200d", "\u034f", "\u2060"}


def _inside_grapheme(text: str, i: int) -> bool:
    """Whether position ``i`` (0 < i < len) falls inside a grapheme cluster."""
    here, before = text[i], text[i - 1]
    return (
        unicodedata.category(here) in ("Mn", "Mc", "Me")
        or "\ufe00" <= here <= "\ufe0f"
        or "\U000e0100" <= here <= "\U000e01ef"
        or "\U0001f3fb" <= here <= "\U0001f3ff"  # skin-tone modifiers
        or here in _JOINERS
        or before in _JOINERS
        or (before == "\r" and here == "\n")
    )


def candidates(text: str, piece_begins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(positions, levels)``: every position strictly inside ``text`` where a chunk may
    begin or end, sorted, with the best level that applies (see the module docstring).
    ``piece_begins`` are the character offsets where the tokenizer's pieces begin."""
    best: dict[int, int] = {}

    def mark(position: int, level: int) -> None:
        if 0 < position < len(text) and best.get(position, GRAPHEME - 1) < level:
            best[position] = level

    for m in _SPACE_RUN.finditer(text):
        run = m.group()
        last = max(run.rfind(c) for c in _NEWLINES)
        if last >= 0:
            breaks = sum(run.count(c) for c in _NEWLINES)
            mark(m.start() + last + 1, PARAGRAPH if breaks >= 2 else LINE)
        mark(m.end(), WORD)
    for m in _SPACED_END.finditer(text):
        mark(m.end(), SENTENCE)
    for m in _UNSPACED_END.finditer(text):
        mark(m.end(), SENTENCE)
    for m in _CJK_PAUSE.finditer(text):
        mark(m.end(), WORD)
    for b in np.unique(piece_begins).tolist():
        if 0 < b < len(text):
            mark(b, GRAPHEME if _inside_grapheme(text, b) else PIECE)
    positions = np.array(sorted(best), dtype=np.int64)
    levels = np.array([best[p] for p in positions.tolist()], dtype=np.int64)
    return positions, levels
