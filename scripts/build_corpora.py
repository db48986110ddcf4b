#!/usr/bin/env python3
"""Build the project's real-text corpora, deterministically and offline.

Outputs (paths relative to the repository root, all JSON Lines, one record a line):

* ``onnx_models/data/fidelity.jsonl.gz``     quantised-vs-fp32 fidelity corpus
* ``onnx_models/data/calibration.jsonl.gz``  quantisation calibration set (disjoint)
* ``embgemma_plugins/bench/data/documents.jsonl.gz``     throughput benchmark documents
* ``embgemma_plugins/bench/data/queries.jsonl``          throughput benchmark queries
* ``integration_tests/data/retrieval.jsonl.gz``  retrieval evaluation set
* ``examples/sample.jsonl``                  demo input for ``embgemma embed``

Record format: ``{"id", "text", "lang", "kind", "source", "license"}`` where ``kind``
is ``query``, ``document`` or ``code`` and ``lang`` is an ISO 639-1 code (``zh``
is Simplified Chinese) or ``code``.  Retrieval query records also carry
``relevant`` (the id of their one right document) and ``query_type``.  The
example file uses ``{"id", "title", "text"}``.

Sources (all Debian bookworm ``main``, i.e. DFSG-free, plus the CPython stdlib)
-------------------------------------------------------------------------------
1. Debian package descriptions, English and DDTP translations::

     lz4 -dc /var/lib/apt/lists/*_bookworm_main_binary-amd64_Packages.lz4 > Packages
     curl -O http://deb.debian.org/debian/dists/bookworm/main/i18n/Translation-en.xz
     for l in de fr es ru ja zh_CN ko; do
       curl -O http://deb.debian.org/debian/dists/bookworm/main/i18n/Translation-$l.bz2
     done

   ``Packages`` gives each binary package's source package and current
   ``Description-md5``; only translations whose md5 matches the current English
   description are used.  Licence: that of the package (Debian main, DFSG-free).
2. Man pages, extracted (not installed) from these ``.deb`` files::

     apt-get download manpages manpages-dev coreutils findutils grep sed tar rsync \\
         manpages-de manpages-fr manpages-es manpages-ru manpages-ja manpages-zh
     for f in *.deb; do n=${f%%_*}; mkdir -p x/$n; dpkg-deb -x $f x/$n; done

   and rendered with ``MANWIDTH=1000 man --nh --nj -E UTF-8 -l PAGE | col -bx``
   (man-db + groff).  Licences: man-pages project pages carry their own licence
   tag (SPDX / ``%%%LICENSE_START``), GNU tools' pages GPL-3+, manpages-l10n
   translations (de, fr, es, ru) GPL-3+, manpages-zh GFDL-1.2+, manpages-ja the
   licence of each original page (DFSG-free, JM Project).
3. Source code, cut into function/class-sized chunks:

   * CPython 3.11.7 ``Lib/`` (``/root/.pyenv/versions/3.11.7/lib/python3.11``, PSF-2.0);
   * JavaScript from Debian ``node-lodash node-express node-commander node-yargs
     node-semver`` (MIT/ISC, from each ``package.json``);
   * Rust from ``librust-serde-dev librust-regex-dev librust-clap-dev
     librust-anyhow-dev librust-itertools-dev`` (MIT OR Apache-2.0, ``Cargo.toml``);
   * Go from ``golang-github-spf13-cobra-dev`` (Apache-2.0) and
     ``golang-github-google-go-cmp-dev`` (BSD-3-Clause);

   all fetched with ``apt-get download`` and extracted like the man pages.

Token lengths use the real EmbeddingGemma SentencePiece model
(``len(sp.encode(text)) + 2`` for BOS/EOS).

Disjointness: every source unit (Debian *source* package, man page name such as
``ls.1``, code file) is assigned to exactly one output by a seeded hash, and the
fidelity and calibration sets draw their code from different upstream packages
(Python: different stdlib files).  Texts are deduplicated across all outputs.

Usage::

    python scripts/build_corpora.py --work /work/scratch/corpora [--download]
"""

from __future__ import annotations

import argparse
import ast
import bz2
import collections
import glob
import gzip
import hashlib
import json
import lzma
import os
import re
import subprocess
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import sentencepiece as spm

SEED = "embgemma-corpora-v1"
REPO = Path(__file__).resolve().parent.parent
MIRROR = "http://deb.debian.org/debian/dists/bookworm/main"
PACKAGES_LZ4 = (
    "/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4"
)
DDTP_LANGS = {"de": "de", "fr": "fr", "es": "es", "ru": "ru", "ja": "ja", "zh_CN": "zh", "ko": "ko"}
MAN_DEBS = {
    # deb name -> (man directory language, ISO code, licence or None = per page)
    "manpages": ("", "en", None),
    "manpages-dev": ("", "en", None),
    "coreutils": ("", "en", "GPL-3+"),
    "findutils": ("", "en", "GPL-3+"),
    "grep": ("", "en", "GPL-3+"),
    "sed": ("", "en", "GPL-3+"),
    "tar": ("", "en", "GPL-3+"),
    "rsync": ("", "en", "GPL-3+"),
    "manpages-de": ("de", "de", "GPL-3+"),
    "manpages-fr": ("fr", "fr", "GPL-3+"),
    "manpages-es": ("es", "es", "GPL-3+"),
    "manpages-ru": ("ru", "ru", "GPL-3+"),
    "manpages-ja": ("ja", "ja", "DFSG-free (original page licence)"),
    "manpages-zh": ("zh_CN", "zh", "GFDL-1.2+"),
}
CODE_DEBS = [
    "node-lodash",
    "node-express",
    "node-commander",
    "node-yargs",
    "node-semver",
    "librust-serde-dev",
    "librust-regex-dev",
    "librust-clap-dev",
    "librust-anyhow-dev",
    "librust-itertools-dev",
    "golang-github-spf13-cobra-dev",
    "golang-github-google-go-cmp-dev",
]
CPYTHON_LIB = Path("/root/.pyenv/versions/3.11.7/lib/python3.11")
TOKENIZER_GLOB = str(
    Path.home()
    / ".cache/huggingface/hub/models--google--embeddinggemma-300m/snapshots/*/tokenizer.model"
)
MAX_TOKENS = 1800

# Code packages used by each split (different upstream packages => disjoint).
FIDELITY_CODE = {
    "node-lodash",
    "node-express",
    "node-commander",
    "librust-serde-dev",
    "librust-regex-dev",
    "librust-clap-dev",
    "golang-github-spf13-cobra-dev",
}
CALIBRATION_CODE = {
    "node-yargs",
    "node-semver",
    "librust-anyhow-dev",
    "librust-itertools-dev",
    "golang-github-google-go-cmp-dev",
}


# --------------------------------------------------------------------------- utils
def rank(key: str, salt: str = "") -> str:
    """Deterministic pseudo-random sort key."""
    return hashlib.sha256(f"{SEED}:{salt}:{key}".encode()).hexdigest()


def bucket(key: str, weights: dict[str, float], salt: str) -> str:
    """Assign ``key`` to one of ``weights``' names with the given proportions."""
    x = int(rank(key, salt)[:12], 16) / float(16**12)
    total = sum(weights.values())
    acc = 0.0
    for name, w in weights.items():
        acc += w / total
        if x < acc:
            return name
    return next(reversed(weights))


_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")


def clean(text: str, keep_layout: bool = False) -> str:
    """Strip control characters; normalise whitespace (moderately, or only trailing for code)."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = text.expandtabs(4) if keep_layout else text.replace("\t", " ")
    text = _CTRL.sub("", text)
    lines = [ln.rstrip() for ln in text.split("\n")]
    if not keep_layout:
        lines = [re.sub(r" {2,}", " ", ln.strip()) for ln in lines]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n").strip() if not keep_layout else text.strip("\n")


def is_cjk(ch: str) -> bool:
    return bool(ch) and (
        "\u3000" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af" or "\uff00" <= ch <= "\uffef"
    )


def join_wrapped(parts: list[str]) -> str:
    """Join hard-wrapped lines of one paragraph; no space between CJK characters."""
    out = ""
    for p in parts:
        if not out:
            out = p
        elif is_cjk(out[-1]) and is_cjk(p[0]):
            out += p
        else:
            out += " " + p
    return out


class Tokenizer:
    def __init__(self, path: str | None) -> None:
        paths = [path] if path else sorted(glob.glob(TOKENIZER_GLOB))
        if not paths:
            sys.exit(f"tokenizer.model not found ({TOKENIZER_GLOB}); pass --tokenizer")
        self.sp = spm.SentencePieceProcessor(model_file=paths[0])
        self._cache: dict[str, int] = {}

    def count(self, text: str) -> int:
        n = self._cache.get(text)
        if n is None:
            n = len(self.sp.encode(text)) + 2
            self._cache[text] = n
        return n


@dataclass
class Rec:
    id: str
    text: str
    lang: str
    kind: str
    source: str
    license: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = {
            "id": self.id,
            "text": self.text,
            "lang": self.lang,
            "kind": self.kind,
            "source": self.source,
            "license": self.license,
        }
        d.update(self.extra)
        return d


# ------------------------------------------------------------------------ download
def download(work: Path) -> None:
    """Fetch every source into ``work`` (needs apt, curl, dpkg-deb, lz4)."""
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run(f"lz4 -dc {PACKAGES_LZ4} > Packages", shell=True, check=True, cwd=work)
    files = ["Translation-en.xz"] + [f"Translation-{lang}.bz2" for lang in DDTP_LANGS]
    for f in files:
        subprocess.run(["curl", "-fsSO", f"{MIRROR}/i18n/{f}"], check=True, cwd=work)
    debs = work / "debs"
    debs.mkdir(exist_ok=True)
    subprocess.run(["apt-get", "download", *MAN_DEBS, *CODE_DEBS], check=True, cwd=debs)
    for deb in sorted(debs.glob("*.deb")):
        target = work / "x" / deb.name.split("_")[0]
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)


# ------------------------------------------------------------------ Debian descriptions
@dataclass
class Desc:
    package: str
    source: str
    lang: str
    synopsis: str
    long: str


def parse_stanzas(lines: Iterable[str]) -> Iterator[dict[str, str]]:
    """RFC822-style stanzas; continuation lines keep their leading space."""
    stanza: dict[str, str] = {}
    key = ""
    for raw in lines:
        line = raw.rstrip("\n")
        if not line:
            if "Package" in stanza:
                yield stanza
            stanza, key = {}, ""
        elif line[0] in " \t" and key:
            stanza[key] += "\n" + line
        elif ":" in line:
            key, _, value = line.partition(":")
            stanza[key] = value.strip()
    if "Package" in stanza:
        yield stanza


def render_long_description(body: str) -> str:
    """Debian long description (continuation lines) -> plain text with paragraphs."""
    paragraphs: list[list[str]] = [[]]
    for line in body.split("\n"):
        if not line.strip():
            continue
        content = line[1:] if line.startswith(" ") else line
        if content.strip() == ".":
            paragraphs.append([])
            continue
        paragraphs[-1].append(content)
    out = []
    for para in paragraphs:
        if not para:
            continue
        rendered: list[list[str]] = []
        for ln in para:
            s = ln.strip()
            verbatim = ln.startswith(" ") or re.match(r"^([*+\-o•·]|\d+[.)]) ", s)
            if verbatim or not rendered:
                rendered.append([s])
            else:
                rendered[-1].append(s)
        out.append("\n".join(join_wrapped(r) for r in rendered))
    return clean("\n\n".join(out))


def open_compressed(path: Path) -> IO[str]:
    """Open a .xz or .bz2 text file."""
    if path.suffix == ".xz":
        return lzma.open(path, "rt", encoding="utf-8")
    return bz2.open(path, "rt", encoding="utf-8")


def load_descriptions(work: Path) -> dict[str, list[Desc]]:
    """Return descriptions by language (``en`` plus DDTP languages)."""
    md5_to_pkg: dict[tuple[str, str], str] = {}
    with open(work / "Packages", encoding="utf-8") as pk:
        for st in parse_stanzas(pk):
            src = st.get("Source", st["Package"]).split()[0]
            md5_to_pkg[(st["Package"], st.get("Description-md5", ""))] = src
    result: dict[str, list[Desc]] = {}
    paths = {"en": work / "Translation-en.xz"}
    paths.update({iso: work / f"Translation-{code}.bz2" for code, iso in DDTP_LANGS.items()})
    for iso, path in paths.items():
        items = []
        with open_compressed(path) as fh:
            for st in parse_stanzas(fh):
                source = md5_to_pkg.get((st["Package"], st.get("Description-md5", "")))
                key = next(
                    (k for k in st if k.startswith("Description-") and k != "Description-md5"),
                    None,
                )
                if source is None or key is None:
                    continue
                first, _, rest = st[key].partition("\n")
                items.append(
                    Desc(st["Package"], source, iso, clean(first), render_long_description(rest))
                )
        result[iso] = items
    return result


# ------------------------------------------------------------------------ man pages
@dataclass
class ManPage:
    name: str  # e.g. "ls.1"
    lang: str
    deb: str
    path: str  # path inside the deb, for provenance
    license: str
    header: str  # NAME-line description
    sections: list[tuple[str, str]]  # (heading, body) after NAME


def man_license(raw: bytes, default: str | None) -> str:
    if default:
        return default
    head = raw[:4000].decode("utf-8", "replace")
    if m := re.search(r"SPDX-License-Identifier:\s*(\S+)", head):
        return m.group(1)
    if m := re.search(r"%%%LICENSE_START\(([^)]+)\)", head):  # man-pages' own licence tags
        return f"man-pages:{m.group(1)}"
    return ""


def render_man(path: Path, cache: Path) -> str:
    key = hashlib.sha256(str(path).encode()).hexdigest()[:24]
    out = cache / f"{key}.txt"
    if out.exists():
        return out.read_text(encoding="utf-8")
    env = dict(os.environ, MANWIDTH="1000", LC_ALL="C.UTF-8", MAN_KEEP_STDERR="0")
    proc = subprocess.run(
        f"man --nh --nj -E UTF-8 -l '{path}' 2>/dev/null | col -bx",
        shell=True,
        capture_output=True,
        env=env,
        check=False,
    )
    text = proc.stdout.decode("utf-8", "replace")
    out.write_text(text, encoding="utf-8")
    return text


def parse_rendered_man(text: str) -> tuple[str, list[tuple[str, str]]] | None:
    lines = text.split("\n")
    nonblank = [i for i, ln in enumerate(lines) if ln.strip()]
    if len(nonblank) < 6:
        return None
    lines = lines[nonblank[0] + 1 : nonblank[-1]]  # drop header and footer lines
    sections: list[tuple[str, list[str]]] = []
    for ln in lines:
        if ln.strip() and not ln[0].isspace():
            sections.append((ln.strip(), []))
        elif sections:
            sections[-1][1].append(ln)
    if len(sections) < 2:
        return None
    bodies = [(h, clean("\n".join(b))) for h, b in sections]
    name_line = " ".join(bodies[0][1].split())
    m = re.search(r"\s[-\u2013\u2014\uff0d]+\s*(.+)$", name_line) or re.search(
        r"[-\u2014]\s*(.+)$", name_line
    )
    if not m:
        return None
    header = re.split(r"\s\S+\s[-\u2013\u2014]\s", m.group(1))[0].strip()
    return header, [(h, b) for h, b in bodies[1:] if b]


def load_man_pages(work: Path) -> list[ManPage]:
    cache = work / "man-render-cache"
    cache.mkdir(exist_ok=True)
    jobs: list[tuple[str, str, Path, str, str | None, bytes]] = []
    for deb, (mandir, iso, lic) in MAN_DEBS.items():
        root = (
            work / "x" / deb / "usr/share/man" / mandir
            if mandir
            else work / "x" / deb / "usr/share/man"
        )
        for p in sorted(root.glob("man[1-8]/*.gz")):
            raw = gzip.decompress(p.read_bytes())
            if raw.lstrip().startswith(b".so "):
                continue
            name = p.name[:-3]
            jobs.append((name, iso, p, deb, lic, raw))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        rendered = list(pool.map(lambda j: render_man(j[2], cache), jobs))
    pages = []
    for (name, iso, p, deb, lic, raw), text in zip(jobs, rendered, strict=True):
        parsed = parse_rendered_man(text)
        license_ = man_license(raw, lic)
        if parsed is None or not license_:
            continue
        header, sections = parsed
        rel = str(p).split("/usr/share/man/", 1)[1]
        pages.append(ManPage(name, iso, deb, rel, license_, header, sections))
    return pages


SYNOPSIS_HEADINGS = re.compile(
    r"SYNOPSIS|LIBRARY|ÜBERSICHT|BIBLIOTHEK|SYNOPSIS|BIBLIOTH[ÈE]QUE|SINOPSIS|BIBLIOTECA|ОБЗОР|"
    r"СИНТАКСИС|БИБЛИОТЕКА|書式|ライブラリ|总览|概述|语法|库",
    re.IGNORECASE,
)


def man_text(
    page: ManPage,
    tok: Tokenizer,
    target: int,
    with_headings: bool = True,
    skip: re.Pattern[str] | None = None,
) -> str:
    """Sections (paragraph by paragraph) of a man page, cut at ``target`` tokens."""
    out: list[str] = []
    used = 0
    for heading, body in page.sections:
        if skip is not None and skip.search(heading):
            continue
        chunks = ([heading] if with_headings else []) + body.split("\n\n")
        for chunk in chunks:
            n = tok.count(chunk)
            if used + n > target and used > 0:
                return "\n\n".join(out)
            if n > MAX_TOKENS:
                continue
            out.append(chunk)
            used += n - 1
    return "\n\n".join(out)


# ----------------------------------------------------------------------------- code
@dataclass
class CodeFile:
    pkg: str  # package the file comes from (deb name or "cpython")
    rel: str  # provenance path
    path: Path
    license: str
    lang: str  # python, javascript, rust, go


def list_code_files(work: Path) -> list[CodeFile]:
    files: list[CodeFile] = []
    for p in sorted(CPYTHON_LIB.rglob("*.py")):
        rel = p.relative_to(CPYTHON_LIB).as_posix()
        if (
            rel.startswith(
                (
                    "test/",
                    "idlelib/idle_test",
                    "lib2to3/tests",
                    "site-packages",
                    "ctypes/test",
                    "tkinter/test",
                    "unittest/test",
                    "distutils/tests",
                    "config-",
                )
            )
            or "/test" in rel
        ):
            continue
        files.append(CodeFile("cpython", f"Lib/{rel}", p, "PSF-2.0", "python"))
    for deb in CODE_DEBS:
        root = work / "x" / deb
        if deb.startswith("node-"):
            name = deb[5:]
            base = root / "usr/share/nodejs" / name
            meta = json.loads((base / "package.json").read_text(encoding="utf-8"))
            lic = meta.get("license", "")
            pats, lang = ["**/*.js", "**/*.mjs", "**/*.cjs"], "javascript"
        elif deb.startswith("librust-"):
            base = next((root / "usr/share/cargo/registry").iterdir())
            m = re.search(
                r'^license\s*=\s*"([^"]+)"', (base / "Cargo.toml").read_text(encoding="utf-8"), re.M
            )
            lic = m.group(1).replace("/", " OR ") if m else ""
            name = base.name
            pats, lang = ["src/**/*.rs"], "rust"
        else:
            base = next(p.parent for p in sorted(root.rglob("*.go")))
            name = "/".join(base.relative_to(root / "usr/share/gocode/src").parts)
            lic = {
                "golang-github-spf13-cobra-dev": "Apache-2.0",
                "golang-github-google-go-cmp-dev": "BSD-3-Clause",
            }[deb]
            base = root / "usr/share/gocode/src" / name
            pats, lang = ["**/*.go"], "go"
        if not lic:
            continue
        for pat in pats:
            for p in sorted(base.glob(pat)):
                rel = p.relative_to(base).as_posix()
                if (
                    p.is_symlink()
                    or ".min." in p.name
                    or rel.endswith("_test.go")
                    or "/test" in f"/{rel}"
                ):
                    continue
                files.append(CodeFile(deb, f"{name}/{rel}", p, lic, lang))
    return files


def python_chunks(src: str) -> list[tuple[int, str]]:
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return []
    lines = src.split("\n")
    out = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
        end = node.end_lineno or node.lineno
        out.append((start + 1, "\n".join(lines[start:end])))
        if isinstance(node, ast.ClassDef):  # methods as separate candidates for big classes
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef):
                    s = min([sub.lineno] + [d.lineno for d in sub.decorator_list]) - 1
                    out.append((s + 1, "\n".join(lines[s : sub.end_lineno or sub.lineno])))
    return out


def brace_chunks(src: str) -> list[tuple[int, str]]:
    """Top-level blocks of brace languages: split at blank lines followed by a column-0 line."""
    lines = src.split("\n")
    chunks: list[tuple[int, list[str]]] = []
    cur: list[str] = []
    start = 1
    for i, ln in enumerate(lines):
        if (
            cur
            and ln
            and not ln[0].isspace()
            and not lines[i - 1].strip()
            and not ln.startswith("}")
        ):
            chunks.append((start, cur))
            cur, start = [], i + 1
        cur.append(ln)
    if cur:
        chunks.append((start, cur))
    merged: list[tuple[int, str]] = []
    decl = re.compile(
        r"^(//|/\*|\*|#\[|#!|pub|fn|impl|struct|enum|trait|type|const|static|mod|use|macro_rules!|"
        r"unsafe|func|var|package|import|function|class|export|module|async|let|'use|\"use)"
    )

    def plausible(block: str) -> bool:
        """A whole top-level declaration (not the middle of a multi-line string literal)."""
        return (
            decl.match(block) is not None
            and block.count("{") == block.count("}")
            and block.count("(") == block.count(")")
            and block.count("`") % 2 == 0
        )

    pend: tuple[int, list[str]] | None = None
    for s, block in chunks:
        body = [b for b in block if b.strip()]
        only_comments = all(
            re.match(r"\s*(//|/\*|\*|#!|use |import |package |'use strict'|\"use strict\")", b)
            for b in body
        )
        if pend is not None:
            s, block = pend[0], pend[1] + block
            pend = None
        if only_comments or len(body) < 3:
            pend = (s, block)
            continue
        text = "\n".join(block)
        if plausible(text):
            merged.append((s, text))
    return merged


def code_chunks(cf: CodeFile, tok: Tokenizer) -> list[Rec]:
    try:
        src = cf.path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return []
    if not src.strip() or max(map(len, src.split("\n"))) > 400:
        return []
    raw = python_chunks(src) if cf.lang == "python" else brace_chunks(src)
    recs = []
    for line, text in raw:
        text = clean(text, keep_layout=True)
        n = tok.count(text)
        if 40 <= n <= MAX_TOKENS and len(text.split("\n")) >= 4:
            recs.append(
                Rec(
                    f"code:{cf.rel}:{line}",
                    text,
                    "code",
                    "code",
                    f"{'cpython' if cf.pkg == 'cpython' else 'debian:' + cf.pkg}:{cf.rel}",
                    cf.license,
                    {"_lang": cf.lang, "_tokens": n},
                )
            )
    return recs


# ------------------------------------------------------------------------ selection
class Registry:
    """Global text deduplication across every output."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    @staticmethod
    def key(text: str) -> str:
        return re.sub(r"\W+", " ", text.casefold()).strip()

    def has(self, text: str) -> bool:
        return self.key(text) in self.seen

    def take(self, text: str) -> bool:
        """Register ``text``; False if it (or an equivalent) was already used."""
        key = self.key(text)
        if not key or key in self.seen:
            return False
        self.seen.add(key)
        return True


def fill(
    out: list[Any],
    cands: Iterable[Any],
    n: int,
    key: Callable[[Any], str],
    salt: str,
    make: Callable[[Any, int], Any | None],
    used: set[str] | None = None,
) -> int:
    """Append up to ``n`` items ``make(candidate, i)`` to ``out``, candidates in seeded order.

    ``make`` returns None to reject a candidate; ``used`` (shared by the caller) lets a
    source unit contribute at most one item.  Returns the number of items added.
    """
    added = 0
    for c in sorted(cands, key=lambda c: rank(key(c), salt)):
        if added >= n:
            break
        k = key(c)
        if used is not None and k in used:
            continue
        item = make(c, added)
        if item is None:
            continue
        if used is not None:
            used.add(k)
        out.append(item)
        added += 1
    return added


def by_source(d: Desc) -> str:
    return d.source


def by_name(p: ManPage) -> str:
    return p.name


def desc_query(d: Desc, reg: Registry, split: str) -> Rec | None:
    text = d.synopsis
    if not (
        len(text.split()) >= 2 or (d.lang in {"ja", "zh", "ko"} and len(text) >= 4)
    ) or not reg.take(text):
        return None
    return Rec(
        f"deb:{d.lang}:{d.package}:synopsis",
        text,
        d.lang,
        "query",
        f"debian-description{'' if d.lang == 'en' else '-' + d.lang}:{d.package}",
        "DFSG (Debian main)",
    )


def desc_doc(
    d: Desc, tok: Tokenizer, reg: Registry, lo: int = 40, hi: int = MAX_TOKENS
) -> Rec | None:
    text = d.long
    if not text or not lo <= tok.count(text) <= hi or not reg.take(text):
        return None
    return Rec(
        f"deb:{d.lang}:{d.package}:description",
        text,
        d.lang,
        "document",
        f"debian-description{'' if d.lang == 'en' else '-' + d.lang}:{d.package}",
        "DFSG (Debian main)",
    )


def man_doc(
    p: ManPage,
    tok: Tokenizer,
    reg: Registry,
    target: int,
    suffix: str = "page",
    with_name: bool = True,
) -> Rec | None:
    budget = min(target, MAX_TOKENS - tok.count(p.header) - 12)
    body = man_text(p, tok, budget, skip=None if with_name else SYNOPSIS_HEADINGS)
    text = f"{p.name.rsplit('.', 1)[0]} - {p.header}\n\n{body}" if with_name else body
    text = clean(text)
    if tok.count(text) < 40 or tok.count(text) > MAX_TOKENS or not reg.take(text):
        return None
    return Rec(
        f"man:{p.lang}:{p.name}:{suffix}", text, p.lang, "document", f"man:{p.path}", p.license
    )


def man_query(p: ManPage, reg: Registry) -> Rec | None:
    text = clean(p.header)
    if len(text) < 4 or len(text) > 200 or not reg.take(text):
        return None
    return Rec(f"man:{p.lang}:{p.name}:name", text, p.lang, "query", f"man:{p.path}", p.license)


def long_targets(n: int, salt: str, short_share: float = 0.25) -> list[int]:
    """Token budgets: some 150-600, the rest log-spread over 600-1800."""
    out = []
    for i in range(n):
        x = int(rank(str(i), salt)[:8], 16) / 16**8
        if i < int(n * short_share):
            out.append(int(150 + 450 * x))
        else:
            out.append(int(620 * (1900 / 620) ** x))
    return out


@dataclass
class Pools:
    desc: dict[str, dict[str, list[Desc]]]  # split -> lang -> descriptions (one per source package)
    man: dict[str, dict[str, list[ManPage]]]  # split -> lang -> pages
    code: dict[str, list[Rec]]  # split -> code chunks
    en_by_pkg: dict[str, Desc]  # English description of every binary package


SPLIT_W = {
    "fidelity": 0.25,
    "calibration": 0.12,
    "benchmarks": 0.28,
    "retrieval": 0.30,
    "examples": 0.05,
}
MAN_W = {"fidelity": 0.35, "calibration": 0.17, "benchmarks": 0.18, "retrieval": 0.30}


def build_pools(
    descs: dict[str, list[Desc]], pages: list[ManPage], code_files: list[CodeFile], tok: Tokenizer
) -> Pools:
    desc_pool: dict[str, dict[str, list[Desc]]] = collections.defaultdict(
        lambda: collections.defaultdict(list)
    )
    for lang, items in descs.items():
        by_src: dict[str, list[Desc]] = collections.defaultdict(list)
        for d in items:
            by_src[d.source].append(d)
        for src, group in by_src.items():
            split = bucket(src, SPLIT_W, "desc")
            # one description per source package and language: the binary package with the
            # longest description that is not a -dev/-doc/-dbg/data companion, if possible
            group.sort(
                key=lambda d: (
                    bool(re.search(r"-(dev|doc|dbg|data|common)$", d.package)),
                    -len(d.long),
                    d.package,
                )
            )
            desc_pool[split][lang].append(group[0])
    man_pool: dict[str, dict[str, list[ManPage]]] = collections.defaultdict(
        lambda: collections.defaultdict(list)
    )
    for p in pages:
        man_pool[bucket(p.name, MAN_W, "man")][p.lang].append(p)
    code_pool: dict[str, list[Rec]] = {"fidelity": [], "calibration": []}
    for cf in code_files:
        if cf.pkg == "cpython":
            top = cf.rel.split("/")[1].removesuffix(".py")
            split = bucket(top, {"fidelity": 0.6, "calibration": 0.4}, "code")
        elif cf.pkg in FIDELITY_CODE:
            split = "fidelity"
        elif cf.pkg in CALIBRATION_CODE:
            split = "calibration"
        else:
            continue
        code_pool[split].extend(code_chunks(cf, tok))
    return Pools(desc_pool, man_pool, code_pool, {d.package: d for d in descs["en"]})


def select_code(chunks: list[Rec], quotas: dict[str, int], reg: Registry, salt: str) -> list[Rec]:
    """Per language: a quarter long chunks (>= 500 tokens), at most two chunks per file and,
    where the pool allows, at most a third of the language's quota from one package/module."""
    out: list[Rec] = []
    per_file: collections.Counter[str] = collections.Counter()
    per_pkg: collections.Counter[str] = collections.Counter()

    def package(c: Rec) -> str:
        origin, path = c.source.split(":", 1)
        return path.split(":")[0] if origin == "debian" else path.split("/")[1]

    for lang, n in quotas.items():
        cands = [c for c in chunks if c.extra["_lang"] == lang]
        long_c = [c for c in cands if c.extra["_tokens"] >= 500]
        short_c = [c for c in cands if c.extra["_tokens"] < 500]
        sel: list[Rec] = []
        for pkg_cap in (max(3, n // 3), n):  # second pass relaxes the package cap if needed

            def make(c: Rec, _i: int, cap: int = pkg_cap) -> Rec | None:
                if per_file[c.source] >= 2 or per_pkg[package(c)] >= cap or not reg.take(c.text):
                    return None
                per_file[c.source] += 1
                per_pkg[package(c)] += 1
                return c

            n_long = sum(c.extra["_tokens"] >= 500 for c in sel)
            fill(sel, long_c, n // 4 - n_long, lambda c: c.id, salt + lang, make)
            fill(sel, short_c, n - len(sel), lambda c: c.id, salt + lang, make)
        out.extend(sel)
    for r in out:
        r.extra = {}
    return out


def build_mixed(
    pools: Pools,
    split: str,
    scale: float,
    tok: Tokenizer,
    reg: Registry,
    code_quota: dict[str, int],
) -> list[Rec]:
    """Fidelity/calibration mix: short queries, documents of varied length, code.

    Each Debian source package and each man page name contributes at most one item.
    """
    q_desc = {"en": 70, "de": 20, "fr": 20, "es": 20, "ru": 20, "ja": 20, "zh": 20, "ko": 20}
    q_man = {"en": 12, "de": 5, "fr": 5, "es": 5, "ru": 5, "ja": 5, "zh": 5}
    d_desc = {"en": 70, "de": 20, "fr": 20, "es": 18, "ru": 20, "ja": 20, "zh": 15, "ko": 20}
    d_man = {"en": 40, "de": 16, "fr": 14, "es": 10, "ru": 14, "ja": 16, "zh": 12}
    recs: list[Rec] = []
    used: set[str] = set()
    for lang, n in q_desc.items():
        fill(
            recs,
            pools.desc[split][lang],
            round(n * scale),
            by_source,
            split + "q",
            lambda d, _i: desc_query(d, reg, split),
            used,
        )
    for lang, n in d_desc.items():
        fill(
            recs,
            pools.desc[split][lang],
            round(n * scale),
            by_source,
            split + "d",
            lambda d, _i: desc_doc(d, tok, reg),
            used,
        )
    for lang, n in q_man.items():
        fill(
            recs,
            pools.man[split][lang],
            round(n * scale),
            by_name,
            split + "mq",
            lambda p, _i: man_query(p, reg),
            used,
        )
    for lang, n in d_man.items():
        k = round(n * scale)
        targets = long_targets(k, split + lang)
        cands = [
            p for p in pools.man[split][lang] if sum(tok.count(b) for _, b in p.sections) > 300
        ]

        def make_man(p: ManPage, i: int, t: list[int] = targets) -> Rec | None:
            # long budgets go to pages long enough to fill them
            if sum(tok.count(b) for _, b in p.sections) < 0.9 * min(t[i], MAX_TOKENS):
                return None
            return man_doc(p, tok, reg, t[i])

        fill(recs, cands, k, by_name, split + "md", make_man, used)
    recs.extend(
        select_code(
            pools.code[split], {k: round(v * scale) for k, v in code_quota.items()}, reg, split
        )
    )
    return recs


def build_benchmarks(pools: Pools, tok: Tokenizer, reg: Registry) -> tuple[list[Rec], list[Rec]]:
    """Retrieval-style passages (mostly 50-400 tokens) and short queries, mostly English."""
    split = "benchmarks"
    docs: list[Rec] = []
    queries: list[Rec] = []
    used: set[str] = set()
    d_quota = {"en": 430, "de": 20, "fr": 20, "es": 10, "ru": 15, "ja": 15, "zh": 10, "ko": 10}
    for lang, n in d_quota.items():
        fill(
            docs,
            pools.desc[split][lang],
            n,
            by_source,
            "bd",
            lambda d, _i: desc_doc(d, tok, reg, 50, 900),
            used,
        )
    # man page passages (sections after NAME), budgets 150-900 tokens skewed short
    m_quota = {"en": 70, "de": 12, "fr": 12, "es": 8, "ru": 10, "ja": 10, "zh": 8}
    for lang, n in m_quota.items():
        targets = [
            int(150 + 750 * (int(rank(str(i), "bm" + lang)[:8], 16) / 16**8) ** 2) for i in range(n)
        ]

        def make_passage(p: ManPage, i: int, t: list[int] = targets) -> Rec | None:
            return man_doc(p, tok, reg, t[i], "passage", with_name=False)

        fill(docs, pools.man[split][lang], n, by_name, "bm", make_passage)
    q_quota = {"en": 90, "de": 6, "fr": 6, "es": 4, "ru": 6, "ja": 6, "zh": 4, "ko": 4}
    for lang, n in q_quota.items():
        fill(
            queries,
            pools.desc[split][lang],
            n,
            by_source,
            "bq",
            lambda d, _i: desc_query(d, reg, split),
            used,
        )
    return docs, queries


def strip_name(query: str, package: str) -> str:
    """Drop the package name (and its source name parts) from a synopsis query."""
    q = re.sub(rf"(?i)\b{re.escape(package)}\b\s*[-:,]?\s*", "", query).strip(" -:,")
    return q[:1].upper() + q[1:] if q else q


def build_retrieval(pools: Pools, tok: Tokenizer, reg: Registry) -> list[Rec]:
    """Documents plus queries that each name their one right document (``relevant``)."""
    split = "retrieval"
    en = {d.source: d for d in pools.desc[split]["en"]}
    syn_count = collections.Counter(d.synopsis.casefold() for d in pools.desc[split]["en"])
    docs: list[Rec] = []
    queries: list[Rec] = []
    doc_src: dict[str, Rec] = {}

    def query_ok(q: str, doc_text: str) -> bool:
        """Not trivially easy: the query is not a substring of the document's first sentence."""
        first = re.split(r"(?<=[.!?。])\s", doc_text, maxsplit=1)[0].casefold()
        return len(q) >= 4 and q.casefold() not in first

    def add_pair(d: Desc, doc_desc: Desc, qtype: str, suffix: str = "") -> bool:
        q = strip_name(d.synopsis, d.package)
        if (
            doc_desc.source in doc_src
            or syn_count[doc_desc.synopsis.casefold()] > 1
            or not query_ok(q, doc_desc.long)
            or reg.has(q)
        ):
            return False
        doc = desc_doc(doc_desc, tok, reg, 40, 1000)
        if doc is None or not reg.take(q):
            return False
        docs.append(doc)
        doc_src[doc_desc.source] = doc
        src = f"debian-description{'' if d.lang == 'en' else '-' + d.lang}:{d.package}"
        queries.append(
            Rec(
                f"ret:q:{d.lang}:{d.package}{suffix}",
                q,
                d.lang,
                "query",
                src,
                "DFSG (Debian main)",
                {"relevant": doc.id, "query_type": qtype},
            )
        )
        return True

    # cross-lingual: translated synopsis -> English long description of the same binary package
    for lang in ["de", "fr", "es", "ru", "ja", "zh", "ko"]:
        n = 0
        for d in sorted(pools.desc[split][lang], key=lambda d: rank(d.source, "rx" + lang)):
            e = pools.en_by_pkg.get(d.package)
            if n < 10 and e is not None and add_pair(d, e, f"synopsis-{lang}-to-en"):
                n += 1
    # English synopsis (package name removed) -> English long description
    n = 0
    for d in sorted(en.values(), key=lambda d: rank(d.source, "rq")):
        if (
            n < 70
            and len(strip_name(d.synopsis, d.package).split()) >= 2
            and add_pair(d, d, "synopsis-en")
        ):
            n += 1
    # English distractor documents (unique synopsis, so no second right answer)
    for d in sorted(en.values(), key=lambda d: rank(d.source, "rd")):
        if sum(r.lang == "en" for r in docs) >= 420:
            break
        if d.source in doc_src or syn_count[d.synopsis.casefold()] > 1:
            continue
        r = desc_doc(d, tok, reg, 40, 1000)
        if r is not None:
            docs.append(r)
            doc_src[d.source] = r
    # monolingual non-English: translated synopsis -> translated long description
    for lang in ["de", "fr", "es", "ru", "ja", "zh", "ko"]:
        n = 0
        for d in sorted(pools.desc[split][lang], key=lambda d: rank(d.source, "rm" + lang)):
            if n < 6 and add_pair(d, d, f"synopsis-{lang}", ":mono"):
                n += 1
    # man pages: NAME-line description -> page body without NAME and SYNOPSIS
    for lang, n_target in {"en": 20, "de": 4, "fr": 4, "es": 3, "ru": 4, "ja": 4, "zh": 3}.items():
        n = 0
        for p in sorted(pools.man[split][lang], key=lambda p: rank(p.name, "rman")):
            if n >= n_target:
                break
            body = man_text(p, tok, 700, skip=SYNOPSIS_HEADINGS)
            q = clean(p.header)
            if tok.count(body) < 80 or not query_ok(q, body) or reg.has(q):
                continue
            if not reg.take(body) or not reg.take(q):
                continue
            doc = Rec(
                f"man:{lang}:{p.name}:body", body, lang, "document", f"man:{p.path}", p.license
            )
            docs.append(doc)
            queries.append(
                Rec(
                    f"ret:q:{lang}:man:{p.name}",
                    q,
                    lang,
                    "query",
                    f"man:{p.path}",
                    p.license,
                    {"relevant": doc.id, "query_type": f"man-name-{lang}"},
                )
            )
            n += 1
    return docs + queries


def build_examples(pools: Pools, tok: Tokenizer, reg: Registry) -> list[dict[str, str]]:
    """Demo input: English packages with a medium-length description; title = name + synopsis."""
    out: list[dict[str, str]] = []
    for d in sorted(pools.desc["examples"]["en"], key=lambda d: rank(d.source, "ex")):
        if len(out) >= 40:
            break
        n = tok.count(d.long) if d.long else 0
        if (
            60 <= n <= 350
            and not re.search(r"-(dev|doc|dbg|data|common)$|^lib", d.package)
            and reg.take(d.long)
        ):
            out.append({"id": d.package, "title": f"{d.package}: {d.synopsis}", "text": d.long})
    return out


# --------------------------------------------------------------------------- output
def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n" for r in rows).encode(
        "utf-8"
    )
    if path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=9, mtime=0)
    path.write_bytes(data)
    print(f"wrote {path.relative_to(REPO)}: {len(rows)} rows, {len(data) / 1024:.0f} KiB")


def check_unique(rows: list[Rec]) -> list[Rec]:
    ids = collections.Counter(r.id for r in rows)
    dup = [i for i, c in ids.items() if c > 1]
    if dup:
        sys.exit(f"duplicate ids: {dup[:5]}")
    return rows


def summary(name: str, rows: list[Rec], tok: Tokenizer) -> None:
    by = collections.Counter((r.kind, r.lang) for r in rows)
    lens = sorted(tok.count(r.text) for r in rows)
    print(
        f"{name}: {len(rows)} items; tokens min {lens[0]} median {lens[len(lens) // 2]} "
        f"max {lens[-1]}; >600: {sum(n > 600 for n in lens)}"
    )
    print("   ", dict(sorted(by.items())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--work", type=Path, default=Path("/work/scratch/corpora"), help="download/temp dir"
    )
    ap.add_argument("--download", action="store_true", help="fetch sources into --work first")
    ap.add_argument("--tokenizer", default=None, help="path of EmbeddingGemma's tokenizer.model")
    args = ap.parse_args()
    if args.download:
        download(args.work)
    tok = Tokenizer(args.tokenizer)
    descs = load_descriptions(args.work)
    pages = load_man_pages(args.work)
    code_files = list_code_files(args.work)
    pools = build_pools(descs, pages, code_files, tok)
    reg = Registry()
    code_quota = {"python": 75, "javascript": 30, "rust": 25, "go": 15}
    fidelity = check_unique(build_mixed(pools, "fidelity", 1.0, tok, reg, code_quota))
    calibration = check_unique(build_mixed(pools, "calibration", 0.36, tok, reg, code_quota))
    bench_docs, bench_queries = build_benchmarks(pools, tok, reg)
    retrieval = check_unique(build_retrieval(pools, tok, reg))
    examples = build_examples(pools, tok, reg)
    for name, rows in [
        ("fidelity", fidelity),
        ("calibration", calibration),
        ("benchmark documents", bench_docs),
        ("benchmark queries", bench_queries),
        ("retrieval", retrieval),
    ]:
        summary(name, rows, tok)
    write_jsonl(REPO / "onnx_models/data/fidelity.jsonl.gz", [r.to_json() for r in fidelity])
    write_jsonl(REPO / "onnx_models/data/calibration.jsonl.gz", [r.to_json() for r in calibration])
    write_jsonl(
        REPO / "embgemma_plugins/bench/data/documents.jsonl.gz",
        [r.to_json() for r in check_unique(bench_docs)],
    )
    write_jsonl(
        REPO / "embgemma_plugins/bench/data/queries.jsonl",
        [r.to_json() for r in check_unique(bench_queries)],
    )
    write_jsonl(
        REPO / "integration_tests/data/retrieval.jsonl.gz", [r.to_json() for r in retrieval]
    )
    write_jsonl(REPO / "examples/sample.jsonl", examples)


if __name__ == "__main__":
    main()
