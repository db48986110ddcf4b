#!/usr/bin/env python3
"""Build the long-document retrieval set: whole man pages, and queries taken from them.

Output: ``integration_tests/data/long_documents.jsonl.gz`` (JSON Lines, gzip), documented
in docs/data.md. Deterministic (seeded hashes, no randomness), offline.

Documents are English man pages (sections 1, 5, 7, 8) of Debian bookworm ``main``
packages installed on the build machine, rendered as ``scripts/build_corpora.py`` renders
man pages (``MANWIDTH=1000 man --nh --nj -E UTF-8 -l PAGE | col -bx``), one paragraph a
line, sections headed by their title: ``NAME`` then ``name - description``, then every
other section. Pages of the packages the other corpora use are left out (disjoint sets),
and so are index pages (mostly lists, few sentences) and duplicates (one page installed
under several names). Each page records its package, version and licence (the ``Files: *``
licence of the package's ``copyright`` file). To fetch the same pages elsewhere:
``apt-get download PACKAGE=VERSION`` for each ``source`` and ``dpkg-deb -x`` it.

Queries follow the inverse cloze task (Lee et al., 2019): a sentence of a page's prose
(10 to 40 words, in a paragraph (a line) of two or more sentences, outside NAME, SYNOPSIS and the
closing sections) is the query, and it is *removed* from the page, so retrieval has to
find where it belongs, not a copy of it. Up to four a page, one from each quarter of the
page's tokens, so truncation at 2,048 tokens misses the later ones. A query's relevant
document is its page; its ``at`` field is the character offset in the page where the
sentence was, so chunk-level relevance is "the chunks whose span holds ``at``".

Usage::

    python scripts/build_long_documents.py [--pages 40] [--max-total 330000]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import itertools
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import build_corpora as bc  # the renderer and tokenizer the other corpora use

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "integration_tests" / "data" / "long_documents.jsonl.gz"
SEED = "embgemma-long-documents-v1"
MIN_TOKENS, MAX_TOKENS = 2_000, 60_000
PER_PACKAGE = 3
QUERIES_PER_PAGE = 4
SKIP_SECTIONS = re.compile(
    r"^(NAME|SYNOPSIS|SEE ALSO|AUTHORS?|COPYRIGHT|REPORTING BUGS|BUGS|HISTORY|COLOPHON|"
    r"LICENSE|AVAILABILITY|RESOURCES|COPYING)\b"
)
SENTENCE_END = re.compile(r"(?<=[a-z0-9)][.!?])\s+(?=[A-Z])")
USED_ELSEWHERE = set(bc.MAN_DEBS) | set(bc.CODE_DEBS)


def rank(key: str) -> str:
    return hashlib.sha256(f"{SEED}:{key}".encode()).hexdigest()


def package_of(path: Path) -> tuple[str, str] | None:
    """(binary package, version) owning ``path``, if it is a Debian main package."""
    found = subprocess.run(["dpkg", "-S", str(path)], capture_output=True, text=True)
    if found.returncode or ":" not in found.stdout:
        return None
    package = found.stdout.split(":")[0].strip()
    show = subprocess.run(
        ["apt-cache", "show", "--no-all-versions", package], capture_output=True, text=True
    ).stdout
    version = re.search(r"^Version: (.+)$", show, re.M)
    filename = re.search(r"^Filename: (.+)$", show, re.M)
    if not version or not filename or not filename.group(1).startswith("pool/main/"):
        return None
    return package, version.group(1)


def licence_of(package: str) -> str:
    """The ``License:`` of the ``Files: *`` stanza of the package's copyright file."""
    path = Path("/usr/share/doc") / package / "copyright"
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    stanza = re.search(r"^Files:\s*\*\s*$(.*?)(?:^\s*$)", text, re.M | re.S)
    found = re.search(r"^License:\s*(.+)$", stanza.group(1) if stanza else text, re.M)
    return found.group(1).strip() if found else ""


def page_text(name: str, rendered: str) -> tuple[str, list[tuple[str, int, int]]] | None:
    """The page as one text, and (heading, start, end) of each section in it."""
    parsed = bc.parse_rendered_man(rendered)
    if parsed is None:
        return None
    header, sections = parsed
    parts, spans = [f"NAME\n\n{name} - {header}"], []
    at = len(parts[0])
    for heading, body in sections:
        block = f"{heading}\n\n{body}"
        spans.append((heading, at + 2 + len(heading) + 2, at + 2 + len(block)))
        parts.append(block)
        at += 2 + len(block)
    return "\n\n".join(parts), spans


def candidates(text: str, spans: list[tuple[str, int, int]]) -> list[tuple[int, int, str]]:
    """(start, end, heading) of every sentence that may become a query (module docstring)."""
    found = []
    for heading, start, end in spans:
        if SKIP_SECTIONS.match(heading):
            continue
        offset = start
        for paragraph in text[start:end].split("\n"):  # a rendered paragraph is one line
            bounds = [0, *(m.end() for m in SENTENCE_END.finditer(paragraph)), len(paragraph)]
            pieces = [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
            for a, b in pieces if len(pieces) >= 2 else []:
                sentence = paragraph[a:b].strip()
                if b == len(paragraph):  # the last sentence: take the space before it too
                    a = len(paragraph[:a].rstrip())
                words = sentence.split()
                letters = sum(c.isalpha() or c == " " for c in sentence) / max(len(sentence), 1)
                if 10 <= len(words) <= 40 and letters >= 0.85 and sentence.endswith("."):
                    found.append((offset + a, offset + a + len(paragraph[a:b]), heading))
            offset += len(paragraph) + 1
    return found


def build(pages: int, max_total: int) -> list[dict[str, Any]]:
    tok = bc.Tokenizer(None)
    cache = Path("/tmp/embgemma-long-documents-man-cache")
    cache.mkdir(exist_ok=True)
    paths = sorted(
        p
        for d in ("man1", "man5", "man7", "man8")
        for p in Path("/usr/share/man", d).glob("*.gz")
        if p.stat().st_size > 4000
    )
    paths.sort(key=lambda p: rank(p.name))
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    per_package: Counter[str] = Counter()
    total = 0
    for path in paths:
        if len([r for r in rows if r["kind"] == "document"]) >= pages:
            break
        if gzip.decompress(path.read_bytes()).lstrip().startswith(b".so "):
            continue
        real = path.resolve()  # a page installed under several names counts once
        name = real.name[:-3]
        made = page_text(name.rsplit(".", 1)[0], bc.render_man(real, cache))
        if made is None or str(real) in seen:
            continue
        text, spans = made
        tokens = tok.count(text)
        if not MIN_TOKENS <= tokens <= MAX_TOKENS or total + tokens > max_total:
            continue
        pool = candidates(text, spans)
        prose = sum(b - a for a, b, _ in pool) / len(text)
        if prose < 0.05 or len(pool) < QUERIES_PER_PAGE:  # an index or a list, not prose
            continue
        owner = package_of(real)
        if owner is None or owner[0] in USED_ELSEWHERE or per_package[owner[0]] >= PER_PACKAGE:
            continue
        licence = licence_of(owner[0])
        if not licence:
            continue
        seen.add(str(real))
        per_package[owner[0]] += 1
        total += tokens
        made_rows = page_rows(name, text, pool, owner, licence, real)
        made_rows[0]["tokens"] = tok.count(made_rows[0]["text"])
        rows.extend(made_rows)
    return rows


def page_rows(
    name: str,
    text: str,
    pool: list[tuple[int, int, str]],
    owner: tuple[str, str],
    licence: str,
    path: Path,
) -> list[dict[str, Any]]:
    """The page's document record (queries' sentences removed) and its query records."""
    doc_id = f"man:{name}"
    quarters: dict[int, list[tuple[int, int, str]]] = {}
    for start, end, heading in pool:
        quarters.setdefault(min(3, 4 * start // len(text)), []).append((start, end, heading))
    picked = sorted(
        min(group, key=lambda s: rank(f"{doc_id}:{s[0]}")) for group in quarters.values()
    )
    kept, queries, cursor, removed = [], [], 0, 0
    for number, (start, end, heading) in enumerate(picked):
        kept.append(text[cursor:start])
        at = start - removed
        queries.append((number, text[start:end].strip(), at, heading))
        removed += end - start
        cursor = end
    kept.append(text[cursor:])
    body = "".join(kept)
    source = f"debian:{owner[0]}={owner[1]}:{path}"
    common = {"lang": "en", "source": source, "license": licence}
    rows: list[dict[str, Any]] = [
        {"id": doc_id, "kind": "document", "text": body, **common}
    ]
    for number, sentence, at, heading in queries:
        rows.append(
            {"id": f"{doc_id}:q{number}", "kind": "query", "text": sentence, **common,
             "relevant": doc_id, "at": at, "section": heading}
        )  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--max-total", type=int, default=330_000, help="tokens of all pages")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    rows = build(args.pages, args.max_total)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    args.out.write_bytes(gzip.compress(data.encode("utf-8"), mtime=0))
    docs = [r for r in rows if r["kind"] == "document"]
    sizes = sorted(r["tokens"] for r in docs)
    print(f"{len(docs)} pages, {len(rows) - len(docs)} queries, tokens {sizes[0]} / "
          f"{sizes[len(sizes) // 2]} / {sizes[-1]}, total {sum(sizes)}; {args.out}")  # fmt: skip


if __name__ == "__main__":
    main()
