"""Response bodies of both dialects, and the token listing of TEI's ``/tokenize``.

Floats go out as the shortest decimal that reads back to the same float32 (orjson
writes numpy float32 so; about 100x faster than ``json`` on 768 floats, half the
bytes), so a client that parses them as float32 gets the server's vectors bit for
bit; ``base64`` is little-endian float32, as OpenAI sends it.  NaN never leaves the
server: batches are checked as they leave the session, and :func:`vectors_body`
checks again before encoding.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import sentencepiece as spm

from embgemma_plugins.tokenizer import Tokenizer


def dumps(body: Any) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def loads(body: bytes) -> Any:
    """JSON; raises ``ValueError`` (``orjson.JSONDecodeError``) naming where it broke."""
    return orjson.loads(body)


def _finite(vectors: np.ndarray) -> np.ndarray:
    if not np.isfinite(vectors).all():  # orjson would write NaN as null
        raise ValueError("refusing to send non-finite values")
    return np.ascontiguousarray(vectors, dtype=np.float32)


def vectors_body(vectors: np.ndarray) -> bytes:
    """TEI's ``/embed`` answer: a list of vectors."""
    return dumps(_finite(vectors))


def openai_embeddings(vectors: np.ndarray, encoding: str, model: str, tokens: int) -> bytes:
    vectors = _finite(vectors)
    if encoding == "base64":
        little = vectors.astype("<f4", copy=False)
        values: list[Any] = [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
    else:
        values = list(vectors)
    return dumps({
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v}
                 for i, v in enumerate(values)],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })


def openai_models(ids: list[str], created: int) -> dict[str, Any]:
    return {"object": "list", "data": [openai_model(i, created) for i in ids]}


def openai_model(model_id: str, created: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "embgemma-plugins"}


def started() -> int:
    return int(time.time())


class TokenLister:
    """TEI's ``/tokenize``: each token's id, text, and character span in the input.

    Reads the model's own SentencePiece file and encodes as the model's tokenizer does
    (text is always text: a typed ``<bos>`` is characters), so the ids listed are the
    ids embedded (tests/test_serve_tei.py checks it).
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._sp = spm.SentencePieceProcessor(model_file=str(Path(tokenizer.model_file)))

    def tokens(self, text: str, special: bool) -> list[dict[str, Any]]:
        proto = self._proto(text)
        chars = _char_offsets(text)
        out: list[dict[str, Any]] = [
            {"id": int(p.id), "text": p.piece, "special": False,
             "start": chars[p.begin], "stop": chars[p.end]}
            for p in proto.pieces
        ]
        if special:
            bos, eos = self._tokenizer.bos_id, self._tokenizer.eos_id
            out = [_special(bos, self._sp.id_to_piece(bos)), *out,
                   _special(eos, self._sp.id_to_piece(eos))]
        return out


    def _proto(self, text: str) -> Any:
        try:  # sentencepiece >= 0.2.1
            return self._sp.encode(text, return_type="proto")
        except TypeError:  # older releases spell it this way
            return self._sp.encode(text, out_type="immutable_proto")  # type: ignore[arg-type]


def _special(token_id: int, piece: str) -> dict[str, Any]:
    return {"id": token_id, "text": piece, "special": True, "start": None, "stop": None}


def _char_offsets(text: str) -> list[int]:
    """Byte offset -> character offset, for every byte boundary of ``text`` in UTF-8."""
    offsets = [0] * (len(text.encode("utf-8")) + 1)
    pos = 0
    for i, ch in enumerate(text):
        width = len(ch.encode("utf-8"))
        for k in range(width):
            offsets[pos + k] = i
        pos += width
    offsets[pos] = len(text)
    return offsets
