"""Keep the memory-mapped token-embedding table from piling up in resident memory.

ONNX Runtime maps each external initializer of ``model.onnx.data`` into memory and reads
it in place. The 262144-row embedding table is read a few rows per token, but every page
fault maps a whole run of neighbouring pages (Linux's fault-around, 64 kB), so after a few
hundred documents nearly all of the table (201 MB at int8) counts in the process's resident
memory though only a few thousand rows were needed (measured: 181 of 201 MB after 200
documents). Those pages are clean copies of the file; ``madvise(MADV_DONTNEED)`` after a
batch drops them from this process, they stay in the kernel's page cache (shared,
reclaimable), and the next batch faults the rows it needs back in at a few microseconds
each. Dropping a clean page of a read-only initializer is always safe (it is re-read from
the file), so the table is simply the largest mapping of the model's weight file. Linux
only; anywhere else, or when nothing large is mapped, this does nothing
(``EMBGEMMA_KEEP_TABLE_PAGES=1`` turns it off).

Releasing between batches does not bound what one batch maps: 2048 tokens fault in up to
2048 x 64 kB (141 MB of the int8 table, measured), and that sits on top of the activation
arena at the batch's peak. Fault-around never crosses the end of a mapping (a VMA), so the
table's mapping is split into runs of a few pages by flagging every other run
``MADV_RANDOM`` (a readahead hint only: the bytes read are the same, and the alternation
keeps the kernel from merging the runs back). A lookup then maps at most one run: 19 MB
instead of 141-157 MB at the CLI's int8 peak, same speed (660 documents, measured).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

MADV_RANDOM, MADV_DONTNEED = 1, 4
MAX_RUNS = 16384  # new mappings one table may add (Linux allows 65530 per process by default)
RELEASE_TOKENS = 2048  # tokens looked up between two releases of the table's pages
MIN_TABLE_BYTES = 16 << 20  # the real table is 100 MB (int4) to 805 MB (fp32); weights < 10 MB
_OPENING = threading.Lock()  # one session opens at a time, so the new mappings are its own
S = TypeVar("S")


def table_ranges(
    model_path: Path, maps: str, min_bytes: int = MIN_TABLE_BYTES, before: str = ""
) -> list[tuple[int, int]]:
    """(address, length) of the largest mapping of the model's external weights, read from
    the text of /proc/self/maps: the token-embedding table, by far the largest initializer.
    Neighbouring lines that continue one mapping of the same file (as a split table's runs
    do) count as one. Mappings in `before` (the maps read just before the session opened)
    are another live session's copy of the same file, never this one's, and so is anything
    overlapping them. Nothing when no new mapping of the folder's files reaches `min_bytes`."""
    old = _weight_spans(model_path, before)
    fresh = [
        s
        for s in _weight_spans(model_path, maps)
        if not any(s[0] < o[1] and o[0] < s[1] for o in old)
    ]  # overlapping an older mapping at all: not (only) ours, never touched
    best: tuple[int, int] | None = None
    for start, end, _, _ in fresh:
        if end - start >= min_bytes and (best is None or end - start > best[1]):
            best = (start, end - start)
    return [best] if best else []


def _weight_spans(model_path: Path, maps: str) -> list[tuple[int, int, str, int]]:
    """(start, end, path, file offset) of each readable mapping of the files beside the
    graph in `model_path`'s folder, continued mappings of one file joined."""
    folder, graph = os.path.realpath(model_path.parent), os.path.realpath(model_path)
    spans: list[tuple[int, int, str, int]] = []  # start, end, path, file offset at start
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or not fields[1].startswith("r"):
            continue
        path = fields[5].strip()
        if os.path.dirname(path) != folder or path == graph:
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        offset = int(fields[2], 16)
        if (
            spans
            and spans[-1][1:3] == (start, path)
            and offset - spans[-1][3] == start - spans[-1][0]
        ):
            start, _, _, offset = spans.pop()  # the same mapping continues: extend it
        spans.append((start, end, path, offset))
    return spans


def _read_maps() -> str | None:
    try:
        return Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def run_pages(length: int, page: int, budget: int) -> int:
    """Pages per run when `length` bytes are split into at most `budget` runs (>= 1)."""
    pages = -(-length // page)
    return max(1, -(-pages // max(budget, 1)))


def map_budget(maps: str) -> int:
    """How many mappings a table may add: MAX_RUNS, or half of what the process has left
    under vm.max_map_count, so that no later mmap of anyone else fails for want of them."""
    try:
        limit = int(Path("/proc/sys/vm/max_map_count").read_text())
    except (OSError, ValueError):
        limit = 65530
    return min(MAX_RUNS, (limit - maps.count("\n")) // 2)


class TablePages:
    """The embedding table's mapped pages of one session; `release(session, tokens)` after
    each run, which drops them once `every` tokens have been looked up since the last drop.

    A batch of 2048 tokens maps as many pages as a long run of short queries of the same
    total size, so releasing per 2048 tokens bounds memory as releasing per run does,
    without re-faulting a single query's rows every call (1% of its latency).
    The ranges belong to the session they were found for: `release` does nothing for any
    other session object, since the addresses of a closed session's mappings may since hold
    live memory."""

    def __init__(
        self, session: object, ranges: list[tuple[int, int]], every: int = RELEASE_TOKENS
    ) -> None:
        self._session = session
        self.ranges = ranges
        self.every = every
        self._pending = 0  # tokens looked up since the last release
        self._madvise = None
        if ranges:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            self._madvise = libc.madvise

    def split(self, budget: int, page: int = mmap.PAGESIZE) -> None:
        """Split each range into runs of a few pages, every other one flagged MADV_RANDOM,
        adding at most `budget` mappings: a page fault then maps one run, not 64 kB."""
        if self._madvise is None or budget < 2 * len(self.ranges):
            return
        for address, length in self.ranges:
            step = run_pages(length, page, budget // len(self.ranges)) * page
            for offset in range(0, length - step, 2 * step):
                if self._madvise(address + offset, step, MADV_RANDOM) != 0:
                    return  # out of mappings: what is split so far stays a valid mapping

    @classmethod
    def open(
        cls,
        create: Callable[[], S],
        model_path: Path,
        min_bytes: int = MIN_TABLE_BYTES,
        every: int = RELEASE_TOKENS,
    ) -> tuple[S, TablePages]:
        """Open a session on `model_path` with `create()` and locate the table it mapped
        (none: a no-op), split so that one lookup maps a few pages. The maps are read before
        and after, so another live session of the same model is never mistaken for this
        one: releasing its pages would not bound ours, and once it closed the addresses
        could hold live memory. Sessions open one at a time here for the same reason."""
        kept = os.environ.get("EMBGEMMA_KEEP_TABLE_PAGES")
        wanted = sys.platform.startswith("linux") and not kept
        with _OPENING:
            before = _read_maps() if wanted else None
            session = create()
            maps = _read_maps() if before is not None else None
        if before is None or maps is None:
            return session, cls(session, [], every)
        pages = cls(session, table_ranges(Path(model_path), maps, min_bytes, before), every)
        pages.split(map_budget(maps))
        return session, pages

    def release(self, session: object, tokens: int) -> None:
        """Count `tokens` looked up by a run of `session`; once `every` have been, drop the
        table's pages from this process (they are re-read from the page cache)."""
        if self._madvise is None or session is not self._session:
            return
        self._pending += tokens
        if self._pending >= self.every:
            self._pending = 0
            for address, length in self.ranges:
                self._madvise(address, length, MADV_DONTNEED)
