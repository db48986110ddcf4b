"""SentencePiece pieces with character offsets into the original Python ``str``.

SentencePiece reports each piece's span as UTF-8 *byte* offsets into the input it was
given (measured on Gemma's model, sentencepiece 0.2.3: ``'héllo'`` gives ``'él'`` the
span 1..4). Its normaliser maps spans back to the original input, and Gemma's normaliser
is the identity anyway (no NFKC, no dummy prefix, whitespace kept), so converting the
byte offsets to character offsets gives exact positions in the caller's string.

A character the vocabulary lacks is spelled by byte-fallback pieces: the first ones get
an empty span at the character's start, the last one the whole character. So every
piece *begins* at a character boundary, and pieces that begin at the same offset belong
together (a chunk boundary can never fall between them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embgemma_plugins.errors import InvalidArgumentError


def utf8(text: str) -> bytes:
    """``text`` as UTF-8, or an error naming the first character that is not valid
    Unicode (a lone surrogate can be neither encoded nor tokenised)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidArgumentError(
            f"character {e.start} (U+{ord(text[e.start]):04X}) is a lone surrogate, "
            "not valid Unicode text"
        ) from None


def char_offsets(text: str) -> np.ndarray:
    """``out[b]`` = index of the character holding UTF-8 byte ``b`` of ``text``;
    ``out[len(bytes)]`` = ``len(text)``."""
    raw = utf8(text)
    data = np.frombuffer(raw, dtype=np.uint8)
    starts = (data & 0xC0) != 0x80  # continuation bytes are 10xxxxxx
    out = np.empty(len(data) + 1, dtype=np.int64)
    np.cumsum(starts, out=out[:-1])
    out[:-1] -= 1
    out[-1] = len(text)
    return out


def piece_spans(processor: Any, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids, begin, end)`` of ``text``'s pieces (no BOS/EOS), offsets in characters.

    ``processor`` is a loaded ``sentencepiece.SentencePieceProcessor``. The serialized
    proto is used because it is the one offset-carrying form every sentencepiece from
    0.1.8 to 0.2.3 returns (``immutable_proto`` was removed in 0.2.3, ``proto`` is new).
    """
    from sentencepiece import sentencepiece_pb2

    chars = char_offsets(text)
    proto = sentencepiece_pb2.SentencePieceText.FromString(  # type: ignore[attr-defined]
        processor.encode(text, out_type="serialized_proto")
    )
    n = len(proto.pieces)
    ids = np.fromiter((p.id for p in proto.pieces), dtype=np.int64, count=n)
    begin = chars[np.fromiter((p.begin for p in proto.pieces), dtype=np.int64, count=n)]
    end = chars[np.fromiter((p.end for p in proto.pieces), dtype=np.int64, count=n)]
    return ids, begin, end
