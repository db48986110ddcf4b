"""Releasing the memory-mapped embedding table's pages (embgemma_plugins/pages.py)."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import numpy as np
import pytest

from embgemma_plugins import EmbeddingGemma
from embgemma_plugins.pages import TablePages, run_pages, table_ranges
from embgemma_plugins.session import create_session

MB = 1 << 20
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def resident_kb(address: int, length: int) -> int:
    """Resident kB of the mappings inside [address, address + length), from /proc/self/smaps."""
    inside, rss = False, 0
    for row in Path("/proc/self/smaps").read_text().splitlines():
        head = row.split()[0]
        if "-" in head and not head.endswith(":"):
            start, end = (int(x, 16) for x in head.split("-"))
            inside = start < address + length and end > address
        elif inside and row.startswith("Rss:"):
            rss += int(row.split()[1])
    return rss


def mappings_in(address: int, length: int) -> int:
    rows = Path("/proc/self/maps").read_text().splitlines()
    spans = [[int(x, 16) for x in row.split()[0].split("-")] for row in rows]
    return sum(1 for start, end in spans if start < address + length and end > address)


def test_run_pages_keeps_the_number_of_runs_within_budget() -> None:
    page = 4096
    assert run_pages(201 * MB, page, 16384) == 4  # the int8 table: 51,456 pages
    assert run_pages(100 * MB, page, 16384) == 2
    assert run_pages(805 * MB, page, 16384) == 13
    assert run_pages(8 * page, page, 16384) == 1
    assert run_pages(8 * page, page, 0) == 8  # no budget: one run, nothing split


def test_the_largest_readable_mapping_of_the_models_folder_is_the_table(tmp_path: Path) -> None:
    folder = tmp_path / "v"
    data, graph, other = folder / "model.onnx.data", folder / "model.onnx", tmp_path / "x.data"

    def line(start: int, size: int, perms: str, path: Path | str, offset: int = 0) -> str:
        return f"{start:x}-{start + size:x} {perms} {offset:08x} fd:00 12 {path}"

    maps = "\n".join(
        [
            line(0x1000000, 4 * MB, "r--p", data),  # a weight
            line(0x2000000, 40 * MB, "rw-p", data),  # the table (ORT maps private, writable),
            line(0x4800000, 24 * MB, "rw-p", data, 40 * MB),  # split in two runs by madvise
            line(0x8000000, 80 * MB, "r--p", graph),  # the graph file itself: never
            line(0xE000000, 99 * MB, "r--p", other),  # another folder: never
            line(0x16000000, 99 * MB, "---p", data),  # not readable: never
            "7ffd0000-7ffd1000 rw-p 00000000 00:00 0 [stack]",
        ]
    )
    assert table_ranges(graph, maps, min_bytes=16 * MB) == [(0x2000000, 64 * MB)]
    assert table_ranges(graph, maps, min_bytes=65 * MB) == []
    # mapped before this session opened: another live session's copy, never this one's
    ours = line(0x1E000000, 32 * MB, "rw-p", data)
    assert table_ranges(graph, maps + "\n" + ours, 16 * MB, before=maps) == [(0x1E000000, 32 * MB)]
    assert table_ranges(graph, maps, 16 * MB, before=maps) == []
    # a new mapping joined onto an old one is not only ours: left alone
    joined = (
        line(0x1000000 - MB, MB, "r--p", data, 0) + "\n" + line(0x1000000, 4 * MB, "r--p", data, MB)
    )
    assert table_ranges(graph, joined, 1, before=line(0x1000000, 4 * MB, "r--p", data, MB)) == []


def tiny_table(m: EmbeddingGemma) -> tuple[int, int]:
    """A new session for `m` and the (address, length) of its tiny table (found by size)."""
    m.session, found = TablePages.open(
        lambda: create_session(m.files.onnx), m.files.onnx, min_bytes=1
    )
    ((address, length),) = found.ranges
    return address, length


@linux_only
def test_release_drops_the_pages_and_keeps_the_vectors(tiny_model: Path) -> None:
    m = EmbeddingGemma(tiny_model)
    address, length = tiny_table(m)
    ranges = [(address, length)]
    texts = ["the quick brown fox", "Привет, мир! 東京は日本の首都です。", "def f(): return 1"]

    def resident() -> int:
        return resident_kb(address, length)

    m.table_pages = TablePages(m.session, [])  # keep the pages: they are resident after a run
    before = m.embed_documents(texts)
    assert resident() > 0
    m.table_pages = TablePages(m.session, ranges)
    m.embed_documents(texts)  # a few dozen tokens: under the default 2048, pages kept
    assert resident() > 0
    m.table_pages = TablePages(m.session, ranges, every=1)
    after = m.embed_documents(texts)  # released after the batch
    assert resident() == 0
    np.testing.assert_array_equal(before, after)  # the rows come back from the file
    np.testing.assert_array_equal(after, m.embed_documents(texts))
    # ranges found for another session object are not released for this one
    m.table_pages = TablePages(object(), ranges, every=1)
    m.embed_documents(texts)
    assert resident() > 0


@linux_only
def test_another_live_session_of_the_model_is_never_taken_for_this_one(tiny_model: Path) -> None:
    """Each session maps its own copy of the table; a gap left by a closed one is where the
    next one maps, above a live one's copy, and the live copy must not be mistaken for it."""
    first, live, m = (EmbeddingGemma(tiny_model) for _ in range(3))
    tiny_table(first)
    live_table = tiny_table(live)
    del first
    gc.collect()
    address, length = tiny_table(m)  # opened where `first` was: the live copy lies below
    assert (address, length) != live_table
    m.table_pages = TablePages(m.session, [(address, length)], every=1)
    live.embed_documents(["the quick brown fox"])
    live_kb = resident_kb(*live_table)
    m.embed_documents(["the quick brown fox"])
    assert resident_kb(address, length) == 0 and resident_kb(*live_table) == live_kb > 0


@linux_only
def test_split_table_maps_a_run_per_lookup_not_the_fault_around(tmp_path: Path) -> None:
    """A private read-only file mapping, as ONNX Runtime maps external data: one byte read
    per 64 kB maps at most one run of pages each once split (fault-around maps 64 kB)."""
    import mmap

    data = tmp_path / "model.onnx.data"
    data.write_bytes(np.random.default_rng(0).bytes(32 * MB))  # in the page cache now
    with data.open("rb") as f:
        table = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
    view = np.frombuffer(table, dtype=np.uint8)
    address = view.ctypes.data
    pages = TablePages(view, [(address, len(view))])
    budget = len(view) // mmap.PAGESIZE // 2
    pages.split(budget)
    step = run_pages(len(view), mmap.PAGESIZE, budget)
    assert step == 2 and mappings_in(address, len(view)) == budget
    touched = len(view[:: 64 * 1024].copy())  # 512 reads, 64 kB apart
    assert 0 < resident_kb(address, len(view)) <= touched * step * mmap.PAGESIZE // 1024
    expected = np.frombuffer(data.read_bytes(), dtype=np.uint8)
    np.testing.assert_array_equal(view, expected)  # split mappings read the same bytes
    pages.release(view, pages.every)
    assert resident_kb(address, len(view)) == 0
    del view, pages
    table.close()
