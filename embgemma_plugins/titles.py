"""Titles waiting for their documents' texts to be embedded.

LangChain's vector stores hand ``embed_documents`` the ``page_content`` of each
``Document`` and nothing else, so a title in ``metadata`` never reaches the prompt.
:class:`TitleQueue` bridges that gap: a block registers each document's text with its
title, and whatever then embeds that text (the store's ``add_documents``,
``from_documents``, LangChain's ``index()``) takes the title with it.  Texts that
appear twice take their titles in registration order.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import Any


class Registration:
    """How many documents one block registered, and how many of them were never
    embedded (their text was changed on the way, or not embedded at all)."""

    def __init__(self, documents: int) -> None:
        self.documents = documents
        self.missed = 0


class TitleQueue:
    """Titles waiting for their text to reach ``embed_documents``; pickles and copies empty."""

    def __init__(self) -> None:
        self.pending: dict[str, deque[tuple[Registration, str | None]]] = {}
        self.lock = threading.Lock()

    def __reduce__(self) -> tuple[type[TitleQueue], tuple[()]]:
        return (TitleQueue, ())

    def __deepcopy__(self, memo: dict[int, Any]) -> TitleQueue:
        return TitleQueue()

    def add(self, owner: Registration, texts: Sequence[str], titles: Sequence[str | None]) -> None:
        with self.lock:
            for text, title in zip(texts, titles, strict=True):
                self.pending.setdefault(text, deque()).append((owner, title))

    def take(self, texts: Sequence[str]) -> list[str | None] | None:
        """The waiting title of each text, in order (``None`` when none is waiting)."""
        if not self.pending:
            return None
        with self.lock:
            titles = [self.pending[t].popleft()[1] if self.pending.get(t) else None
                      for t in texts]
            for t in texts:
                if t in self.pending and not self.pending[t]:
                    del self.pending[t]
        return titles

    def drop(self, owner: Registration) -> int:
        """Forget ``owner``'s titles; how many were never taken."""
        dropped = 0
        with self.lock:
            for text in list(self.pending):
                kept = deque(e for e in self.pending[text] if e[0] is not owner)
                dropped += len(self.pending[text]) - len(kept)
                if kept:
                    self.pending[text] = kept
                else:
                    del self.pending[text]
        return dropped
