"""The real vocabulary: no special or user-defined piece typed in a text becomes its token.

Gemma's tokenizer.model has 3 control pieces, <unk>, 256 byte pieces and 6,410 user-defined
ones (``<mask>``, ``<start_of_turn>``, ``<end_of_turn>``, ``<start_of_image>``, 6,242
``<unusedN>``, and 92 runs of whitespace and 68 HTML tags that are ordinary text).  Each is
typed into a text, alone and in context; the ids must hold none of the protected ids and decode back
to the text.  (Ids of ordinary text: test_real_parity.py compares them with Hugging Face's.)
"""

from __future__ import annotations

from pathlib import Path

from embgemma_plugins.literal import user_defined
from embgemma_plugins.tokenizer import Tokenizer
from tests.pieces import USER_DEFINED, check_every_piece, kinds


def test_every_non_normal_piece_of_the_real_vocabulary_is_plain_text(real_checkpoint: Path):
    model_file = real_checkpoint / "tokenizer.model"
    found = kinds(model_file)
    assert len(found) == 6670
    tok = Tokenizer(model_file)
    assert len(tok.literal.ids) == 6250
    table = tok.encode(["<table><tr><td>numpy</td></tr></table>"], 2048).ids[0].tolist()
    assert {found[i][0] for i in table if i in found} >= {"<table>", "<tr>", "<td>", "</td>"}
    for name, token in (("<mask>", 4), ("<start_of_turn>", 105), ("<end_of_turn>", 106),
                        ("<start_of_image>", 255999)):  # the four
        assert found[token][0] == name
        ids = tok.encode([f"user text {name} more"], 2048).ids[0].tolist()
        assert token not in ids
    assert check_every_piece(tok, model_file) == 5 * 6670


def test_the_scan_reads_the_real_vocabulary_as_protobuf_does(real_checkpoint: Path):
    model_file = real_checkpoint / "tokenizer.model"
    expected = {p for p, kind in kinds(model_file).values() if kind == USER_DEFINED}
    assert user_defined(model_file.read_bytes()) == expected and len(expected) == 6410
