"""The import rules of docs/architecture.md, read from the source: every import statement
that can run, at module level or inside a function, points down the layers, and no module
reaches itself (imports under ``if TYPE_CHECKING:`` never run and are not counted).

A new module must be placed in a layer here (and in docs/architecture.md) before it passes.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "embgemma_plugins"
#: Source folders and the package each one is installed as (pyproject's package-dir).
FOLDERS = {
    "embgemma_plugins": PACKAGE,
    "cli": f"{PACKAGE}.cli",
    "onnx_models": f"{PACKAGE}.onnx_models",
}

#: Lowest first; a module may import its own layer and the layers below it only.
LAYERS: list[tuple[str, list[str]]] = [
    ("foundation", ["errors", "maths", "literal", "tokenizer", "prompts", "batching",
                    "onnxproto", "unpack4", "pages", "session", "offsets", "boundaries",
                    "chunking", "windows"]),
    ("store", ["store", "store.*"]),
    # "": the package's own __init__
    ("model", ["settings", "model", "shared", "late", "long", ""]),
    ("library", ["jobs", "jobs.*", "ray", "ray.*", "framework", "configfile", "config",
                 "conventions", "titles", "langchain", "llamaindex", "bench", "bench.*", "serve",
                 "serve.*", "splitting", "langchain_splitter", "llamaindex_parser"]),
    ("build", ["onnx_models", "onnx_models.*"]),
    ("cli", ["cli", "cli.*"]),
]
#: Rooms of one layer that must not lean on each other (importer prefix -> forbidden prefixes).
SIDEWAYS = {
    "jobs": ("ray", "framework", "config", "langchain", "llamaindex", "bench", "serve"),
    "ray": ("framework", "config", "langchain", "llamaindex", "bench", "serve"),
    "serve": ("jobs", "ray", "framework", "config", "langchain", "llamaindex", "bench"),
}
#: Third-party packages the runtime never imports (torch & co. are the export extra's;
#: click is the CLI's). The in-package benchmark runs sentence-transformers as the baseline.
HEAVY = ("click", "torch", "transformers", "optimum", "sentence_transformers")
MAY_IMPORT_HEAVY = ("build", "cli")


def modules() -> dict[str, Path]:
    """Every module of the installed package, by its import name."""
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def layer_of(module: str) -> str:
    name = module.removeprefix(PACKAGE).removeprefix(".")
    for layer, patterns in LAYERS:
        for p in patterns:
            if name == p or (p.endswith(".*") and name.startswith(p[:-1])):
                return layer
    raise AssertionError(f"{module} is in no layer: place it in tests/test_architecture.py "
                         "and docs/architecture.md")


def _runs(tree: ast.Module) -> Iterator[ast.AST]:
    """Every node of ``tree`` that can run: all but the bodies of ``if TYPE_CHECKING:``
    (imports for type checkers only)."""
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            todo += node.orelse
            continue
        todo += list(ast.iter_child_nodes(node))


def imports(module: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import statement that can run in ``path``
    (module level or in a function), resolved."""
    is_package = path.name == "__init__.py"
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in _runs(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = ".".join(base[: len(base) - node.level + 1])
                target = f"{parent}.{node.module}" if node.module else parent
            else:
                target = node.module or ""
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{target}.{alias.name}"
                yield (sub if sub in known else target), node.lineno


def graph() -> dict[str, list[tuple[str, int]]]:
    found = modules()
    known = set(found)
    return {m: list(imports(m, p, known)) for m, p in found.items()}


RANK = {layer: i for i, (layer, _) in enumerate(LAYERS)}


def test_every_module_has_a_layer() -> None:
    for module in modules():
        layer_of(module)


def test_imports_point_down_the_layers() -> None:
    bad = []
    for module, targets in graph().items():
        layer = layer_of(module)
        room = module.removeprefix(f"{PACKAGE}.").split(".")[0]
        for target, line in targets:
            top = target.split(".")[0]
            if top in HEAVY and layer not in MAY_IMPORT_HEAVY and room != "bench":
                bad.append(f"{module}:{line} imports {target} (not in the runtime)")
            if top != PACKAGE:
                continue
            if RANK[layer_of(target)] > RANK[layer]:
                bad.append(f"{module}:{line} ({layer}) imports {target} ({layer_of(target)})")
            other = target.removeprefix(f"{PACKAGE}.").split(".")[0]
            if other in SIDEWAYS.get(room, ()):
                bad.append(f"{module}:{line} ({room}) imports {target} ({other})")
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    edges = {m: sorted({t for t, _ in ts if t in modules()} - {m}) for m, ts in graph().items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in edges.get(m, []):
            if state.get(t) == 1:
                cycles.append([*stack[stack.index(t):], t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_modules_stay_small(folder: str) -> None:
    long = [f"{p.relative_to(ROOT)}: {n} lines" for p in sorted((ROOT / folder).rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 260]
    assert not long, long
