"""Checking a tokenizer against every non-normal piece of its vocabulary (unit and
integration tests share it)."""

from __future__ import annotations

from pathlib import Path

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb

from embgemma_plugins.literal import is_text
from embgemma_plugins.tokenizer import Tokenizer

NORMAL, UNKNOWN, CONTROL, USER_DEFINED = 1, 2, 3, 4


PROMPT = "task: search result | query: "


def kinds(model_file: Path) -> dict[int, tuple[str, int]]:
    """id -> (piece, type) for every piece that is not NORMAL, read with protobuf."""
    m = pb.ModelProto()
    m.ParseFromString(model_file.read_bytes())
    return {i: (p.piece, p.type) for i, p in enumerate(m.pieces) if p.type != NORMAL}


def protected(found: dict[int, tuple[str, int]]) -> set[int]:
    return {i for i, (piece, kind) in found.items()
            if kind in (UNKNOWN, CONTROL) or (kind == USER_DEFINED and not is_text(piece))}


def check_every_piece(tok: Tokenizer, model_file: Path) -> int:
    found = kinds(model_file)
    banned = protected(found)
    assert tok.literal.ids == {i for i in banned if found[i][1] == USER_DEFINED}
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    checked = 0
    for piece, _kind in found.values():
        text = piece.replace("\u2581", " ")
        for sample in (text, f"x{text}y", PROMPT + text, text + text, f"<{text}>"):
            ids = tok.encode([sample], 2048).ids[0].tolist()
            assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
            assert not banned & set(ids[1:-1]), (sample, ids)
            assert sp.decode(ids[1:-1]) == sample, (sample, ids)
            checked += 1
    return checked
