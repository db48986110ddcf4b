"""SentencePiece tokenisation exactly as the Hugging Face Gemma tokenizer does it.

EmbeddingGemma adds both BOS (id 2) and EOS (id 1); truncation keeps EOS as the
last token; padding is on the right with id 0.  Plain ``sentencepiece`` wrapped as
``[BOS] + ids + [EOS]`` gives the same ids as the Hugging Face tokenizer, with one
deliberate difference: text is always text.  A literal ``<bos>``, ``<eos>``, ``<mask>``,
``<start_of_turn>`` or any other special or user-defined piece typed inside an input is
encoded as the characters it consists of, never as that token (:mod:`.literal`), so user
data cannot inject control tokens; runs of whitespace, which Gemma also lists as
user-defined pieces, are ordinary text and keep their ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm

from embgemma_plugins.errors import InvalidArgumentError, ModelNotFoundError
from embgemma_plugins.literal import Literal

MIN_LENGTH = 3  # BOS, at least one piece, EOS
MAX_LENGTH = 2048  # the model's max_position_embeddings and max_seq_length
#: From this many texts on, SentencePiece's batch call (a thread pool) is faster than a
#: loop; below, starting the pool costs more (one query: 0.5-0.9 ms vs 5 us).
BATCH_ENCODE_MIN = 32


@dataclass(frozen=True)
class Encoded:
    """Token ids of a list of texts, before padding.

    ``ids[i]`` is an int64 array ``[BOS, ..., EOS]``; ``lengths[i]`` is the length
    the text would have had without truncation, so callers can count truncations.
    """

    ids: list[np.ndarray]
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def truncated(self) -> np.ndarray:
        """Boolean mask of the texts that lost tokens to ``max_length``."""
        return self.lengths > np.array([len(x) for x in self.ids], dtype=np.int64)


class Tokenizer:
    """A thread-safe SentencePiece tokenizer with Gemma's BOS/EOS/pad conventions."""

    def __init__(self, model_file: str | Path) -> None:
        self.model_file = Path(model_file)
        try:
            model = self.model_file.read_bytes()
            self._sp = spm.SentencePieceProcessor(model_proto=model)
        except (OSError, RuntimeError) as e:
            raise ModelNotFoundError(
                f"{self.model_file} is not a readable SentencePiece tokenizer ({e}); replace "
                "the model folder's tokenizer.model with the checkpoint's"
            ) from None
        self.bos_id = int(self._sp.bos_id())
        self.eos_id = int(self._sp.eos_id())
        self.pad_id = max(int(self._sp.pad_id()), 0)
        if self.bos_id < 0 or self.eos_id < 0:
            raise InvalidArgumentError(f"{self.model_file} defines no BOS or EOS token")
        self.literal = Literal(self._sp, model)

    @property
    def vocab_size(self) -> int:
        return int(self._sp.get_piece_size())

    def encode(self, texts: Sequence[str], max_length: int) -> Encoded:
        """Encode ``texts`` as ``[BOS] + pieces + [EOS]``, cut to ``max_length`` tokens."""
        if max_length < MIN_LENGTH:
            raise InvalidArgumentError(
                f"max_length must be at least {MIN_LENGTH}, got {max_length}"
            )
        texts = list(texts)
        pieces: list[list[int]] = (
            self._sp.encode(texts, out_type=int) if len(texts) >= BATCH_ENCODE_MIN
            else [self._sp.encode(t, out_type=int) for t in texts]
        )
        for i, text in enumerate(texts):
            cuts = self.literal.cuts(text)
            if cuts:  # a protected string occurs: encode the text around it
                pieces[i] = self.literal.encode(text, cuts)
        keep = max_length - 2
        ids = [np.array([self.bos_id, *p[:keep], self.eos_id], dtype=np.int64) for p in pieces]
        lengths = np.array([len(p) + 2 for p in pieces], dtype=np.int64)
        return Encoded(ids, lengths)

    def pieces(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pieces of ``text`` (no BOS/EOS): ``(ids, begin, end)``, offsets in characters
        of ``text``. SentencePiece reports UTF-8 byte offsets into the original input
        (normalisation is identity for Gemma); a character split by byte fallback gives
        its first pieces an empty span at the character's start, its last the whole
        character."""
        from embgemma_plugins.offsets import piece_spans

        return piece_spans(self._sp, text)

    def pad(self, batch: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Right-pad a batch: ``(input_ids, attention_mask)``, both int64 of shape (n, max_len)."""
        width = max(len(x) for x in batch)
        input_ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        return input_ids, mask
