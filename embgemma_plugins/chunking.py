"""Token-exact chunking of long texts with the model's own tokenizer and prompt.

A chunk is a span ``[start, end)`` of character offsets into the caller's string. The
chunks of a text cover it with no gap (each begins at or before the previous one's end),
consecutive chunks share about ``overlap`` tokens, and every chunk, embedded exactly as
the model sees it (``BOS + prompt + text[start:end] + EOS``), is at most ``max_tokens``
tokens: each is counted by tokenising that string, not by adding up pieces, because
SentencePiece may segment a span differently on its own than inside the whole text.

Boundaries prefer a paragraph, then a sentence, then a line, then a word, then any token
(``boundaries.py``): a chunk ends at the best boundary in the last half of its budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embgemma_plugins.boundaries import candidates
from embgemma_plugins.errors import InvalidArgumentError
from embgemma_plugins.offsets import utf8
from embgemma_plugins.tokenizer import MIN_LENGTH, Tokenizer

WINDOW = 2048  # the model's window: no chunk may be longer
MIN_FILL = 0.5  # a chunk ends at the best boundary past this share of its budget
MIN_BUDGET = 8  # text tokens a chunk must have room for (a byte-fallback character is 4)


@dataclass(frozen=True)
class Chunk:
    """One chunk of a text: ``text == source[start:end]``; ``tokens`` is the length the
    model sees (BOS, prompt, text, EOS); ``index`` counts the text's chunks from 0."""

    index: int
    start: int
    end: int
    text: str
    tokens: int


def count_tokens(tokenizer: Tokenizer, texts: Sequence[str]) -> np.ndarray:
    """Tokens of each string as the model sees it, BOS and EOS included."""
    return tokenizer.encode(texts, MIN_LENGTH).lengths  # lengths are before truncation


#: Tokens neighbouring chunks share unless told: 64, or half of ``max_tokens`` when that is
#: less (so any chunk size works without naming an overlap).
OVERLAP = 64


def check_sizes(max_tokens: int, overlap: int | None) -> int:
    """The overlap to use (``None``: the default) for chunks of ``max_tokens``; a size out
    of range is an error naming it."""
    for name, value in (("max_tokens", max_tokens), ("overlap", overlap)):
        if name == "overlap" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InvalidArgumentError(f"{name} must be an integer, got {value!r}")
    if not MIN_LENGTH + MIN_BUDGET <= max_tokens <= WINDOW:
        raise InvalidArgumentError(
            f"max_tokens must be in {MIN_LENGTH + MIN_BUDGET}..{WINDOW} (the model's window), "
            f"got {max_tokens}"
        )
    if overlap is None:
        return min(OVERLAP, max_tokens // 2)
    if not 0 <= overlap <= max_tokens // 2:
        raise InvalidArgumentError(
            f"overlap must be in 0..{max_tokens // 2} (half of max_tokens), got {overlap}"
        )
    return int(overlap)


def chunk_texts(
    tokenizer: Tokenizer,
    texts: Sequence[str],
    prompts: Sequence[str],
    max_tokens: int = 512,
    overlap: int | None = None,
) -> list[list[Chunk]]:
    """The chunks of each text, with ``prompts[i]`` the prompt ``texts[i]`` is embedded
    with. A text that fits whole is one chunk; an empty text is one empty chunk.
    ``overlap``: default :data:`OVERLAP` tokens, or half of ``max_tokens`` when less."""
    overlap = check_sizes(max_tokens, overlap)
    if len(prompts) != len(texts):
        raise InvalidArgumentError(f"{len(prompts)} prompts for {len(texts)} texts")
    out = []
    for i, (text, prompt) in enumerate(zip(texts, prompts, strict=True)):
        try:
            out.append(_Splitter(tokenizer, text, prompt, max_tokens, overlap).run())
        except InvalidArgumentError as e:
            raise InvalidArgumentError(f"texts[{i}]: {e}") from None
    return out


def chunk_text(
    tokenizer: Tokenizer, text: str, prompt: str, max_tokens: int = 512, overlap: int | None = None
) -> list[Chunk]:
    """The chunks of one text (see the module docstring)."""
    splitter = _Splitter(tokenizer, text, prompt, max_tokens, check_sizes(max_tokens, overlap))
    return splitter.run()


class _Splitter:
    """The state of chunking one text: its pieces, boundary candidates and budget."""

    def __init__(
        self, tokenizer: Tokenizer, text: str, prompt: str, max_tokens: int, overlap: int
    ) -> None:
        utf8(text)  # a clear error for text that is not valid Unicode
        self.tokenizer, self.text, self.prompt = tokenizer, text, prompt
        self.max_tokens = max_tokens
        self.frame = int(count_tokens(tokenizer, [prompt])[0])
        self.budget = max_tokens - self.frame
        self.overlap = min(overlap, self.budget // 2)

    def prepare(self) -> None:
        """Pieces and boundary candidates: needed only for a text that does not fit whole."""
        if self.budget < MIN_BUDGET:
            raise InvalidArgumentError(
                f"the prompt {self.prompt!r} takes {self.frame} tokens with BOS and EOS, leaving "
                f"{max(self.budget, 0)} of max_tokens={self.max_tokens} for text "
                f"(need {MIN_BUDGET})"
            )
        _ids, self.begins, _ends = self.tokenizer.pieces(self.text)
        self.pos, self.level = candidates(self.text, self.begins)
        self.tok = np.searchsorted(self.begins, self.pos, side="left")  # pieces before each

    def tokens_before(self, position: int) -> int:
        return int(np.searchsorted(self.begins, position, side="left"))

    def count(self, start: int, end: int) -> int:
        return int(count_tokens(self.tokenizer, [self.prompt + self.text[start:end]])[0])

    def run(self) -> list[Chunk]:
        text, chunks = self.text, list[Chunk]()
        whole = self.count(0, len(text))
        if whole <= self.max_tokens:
            return [Chunk(0, 0, len(text), text, whole)]
        self.prepare()
        start, done = 0, 0  # done: the end of the previous chunk
        while done < len(text):
            end, tokens = self.fit(start, done)
            if end is None:  # no room past the previous end from an overlapping start
                start = done
                end, tokens = self.fit(start, done)
                if end is None:
                    raise InvalidArgumentError(
                        f"no boundary after character {start} fits max_tokens={self.max_tokens}"
                    )
            chunks.append(Chunk(len(chunks), start, end, text[start:end], tokens))
            start, done = self.next_start(start, end), end
        return chunks

    def fit(self, start: int, done: int) -> tuple[int | None, int]:
        """The best end after ``done`` for a chunk from ``start`` that fits, and its count."""
        budget, first = self.budget, self.tokens_before(start)
        while budget >= 1:
            end = self.choose_end(start, done, first, budget)
            if end is None:
                return None, 0
            tokens = self.count(start, end)
            if tokens <= self.max_tokens:
                return end, tokens
            budget -= max(1, tokens - self.max_tokens)  # segmentation shifted: try shorter
        return None, 0

    def choose_end(self, start: int, done: int, first: int, budget: int) -> int | None:
        """The farthest candidate of the best level within ``budget`` pieces of ``start``
        (preferring the last ``1 - MIN_FILL`` of the budget), past ``done``."""
        if len(self.begins) - first <= budget:
            return len(self.text)
        lo = int(np.searchsorted(self.pos, max(start, done), side="right"))
        hi = int(np.searchsorted(self.tok, first + budget, side="right"))
        if hi <= lo:
            return None
        late = lo + int(np.searchsorted(self.tok[lo:hi], first + MIN_FILL * budget, side="left"))
        pick = slice(late, hi) if late < hi else slice(lo, hi)
        levels = self.level[pick]
        best = int(np.flatnonzero(levels == levels.max())[-1])
        return int(self.pos[pick][best])

    def next_start(self, start: int, end: int) -> int:
        """Where the chunk after ``[start, end)`` begins: about ``overlap`` tokens before
        ``end``: the best boundary at most ``overlap`` and, if one is there, at least a quarter
        of it before ``end``; the earliest of that level. Without a candidate: ``end``."""
        if self.overlap == 0 or end >= len(self.text):
            return end
        last = self.tokens_before(end)
        lo = int(np.searchsorted(self.pos, start, side="right"))
        hi = int(np.searchsorted(self.pos, end, side="left"))
        within = np.flatnonzero(last - self.tok[lo:hi] <= self.overlap) + lo
        if len(within) == 0:
            return end
        band = within[last - self.tok[within] >= self.overlap / 4]  # not a token or two
        pool = band if len(band) else within
        levels = self.level[pool]
        return int(self.pos[pool][np.flatnonzero(levels == levels.max())[0]])
