"""Releasing the memory-mapped embedding table's pages (embgemma_plugins/pages.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from embgemma_plugins import EmbeddingGemma
from embgemma_plugins.pages import TablePages, table_ranges

MB = 1 << 20


def test_the_largest_readable_mapping_of_the_models_folder_is_the_table(tmp_path: Path) -> None:
    folder = tmp_path / "v"
    data, graph, other = folder / "model.onnx.data", folder / "model.onnx", tmp_path / "x.data"

    def line(start: int, size: int, perms: str, path: Path | str) -> str:
        return f"{start:x}-{start + size:x} {perms} 00000000 fd:00 12 {path}"

    maps = "\n".join(
        [
            line(0x1000000, 4 * MB, "r--p", data),  # a weight
            line(0x2000000, 64 * MB, "rw-p", data),  # the table (ORT maps private, writable)
            line(0x8000000, 80 * MB, "r--p", graph),  # the graph file itself: never
            line(0xE000000, 99 * MB, "r--p", other),  # another folder: never
            line(0x16000000, 99 * MB, "---p", data),  # not readable: never
            "7ffd0000-7ffd1000 rw-p 00000000 00:00 0 [stack]",
        ]
    )
    assert table_ranges(graph, maps, min_bytes=16 * MB) == [(0x2000000, 64 * MB)]
    assert table_ranges(graph, maps, min_bytes=65 * MB) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise release is Linux only")
def test_release_drops_the_pages_and_keeps_the_vectors(tiny_model: Path) -> None:
    m = EmbeddingGemma(tiny_model)
    m.table_pages = TablePages.find(m.session, m.files.onnx, min_bytes=1)  # the tiny table
    ((address, length),) = m.table_pages.ranges
    texts = ["the quick brown fox", "Привет, мир! 東京は日本の首都です。", "def f(): return 1"]

    def resident() -> int:
        """Resident kB of the mapping holding the table (from /proc/self/smaps)."""
        inside, rss = False, 0
        for row in Path("/proc/self/smaps").read_text().splitlines():
            head = row.split()[0]
            if "-" in head and not head.endswith(":"):
                start, end = (int(x, 16) for x in head.split("-"))
                inside = start <= address < end
            elif inside and row.startswith("Rss:"):
                rss += int(row.split()[1])
        return rss

    m.table_pages = TablePages(m.session, [])  # keep the pages: they are resident after a run
    before = m.embed_documents(texts)
    assert resident() > 0
    m.table_pages = TablePages.find(m.session, m.files.onnx, min_bytes=1)
    m.embed_documents(texts)  # a few dozen tokens: under the default 2048, pages kept
    assert resident() > 0
    m.table_pages = TablePages.find(m.session, m.files.onnx, min_bytes=1, every=1)
    after = m.embed_documents(texts)  # released after the batch
    assert resident() == 0
    np.testing.assert_array_equal(before, after)  # the rows come back from the file
    np.testing.assert_array_equal(after, m.embed_documents(texts))
    # ranges found for another session object are not released for this one
    m.table_pages = TablePages(object(), [(address, length)], every=1)
    m.embed_documents(texts)
    assert resident() > 0
