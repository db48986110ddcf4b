"""Export a sentence-transformers checkpoint into a store variant folder.

Optimum's sentence-transformers path exports the *whole* pipeline (transformer,
mean pooling, both Dense layers, normalisation) with the output
``sentence_embedding``; an export that stopped after the transformer would give
vectors nearly orthogonal to the model's.  The variant's recipe is then applied,
the tokenizer and prompt table copied beside the graph, and a manifest written.
The folder appears in the store only when complete (built aside, then renamed).

Needs the ``export`` extra (torch, transformers >= 4.57, optimum-onnx).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from embgemma_plugins.errors import BelowBarError, InvalidArgumentError
from embgemma_plugins.model import MAX_LENGTH
from embgemma_plugins.prompts import PROMPTS_FILE, PromptTable
from embgemma_plugins.store.checkpoint import resolve_checkpoint
from embgemma_plugins.store.layout import DEFAULT_MODEL, ONNX_FILE, is_variant_dir, variant_dir
from embgemma_plugins.store.manifest import Manifest
from embgemma_plugins.store.registry import check_variant, info, recipe_digest
from embgemma_plugins.store.resolve import TOKENIZER_FILE
from embgemma_plugins.tokenizer import Tokenizer

from .child import run
from .corpus import CALIBRATION, CORPUS, load_corpus
from .fidelity import measure_variant
from .steps import Steps

Progress = Callable[[str], None]
#: Set (to anything but "" or "0") for a first-use build that shows third-party output.
ENV_VERBOSE = "EMBGEMMA_VERBOSE"
VERSIONED = (
    "embgemma-plugins",
    "torch",
    "transformers",
    "optimum",
    "optimum-onnx",
    "sentence-transformers",
    "onnx",
    "onnxruntime",
)


def package_versions() -> dict[str, str]:
    found = {}
    for name in VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def _check_transformers() -> None:
    version = metadata.version("transformers")
    major, minor = (int(x) for x in version.split(".")[:2])
    if (major, minor) < (4, 57):
        raise InvalidArgumentError(
            f"transformers {version} runs EmbeddingGemma with causal attention (silently "
            "wrong vectors); install the export extra: pip install 'embgemma-plugins[export]'"
        )


def optimum_export(checkpoint: Path, out: Path) -> Path:
    """Export the whole sentence-transformers pipeline to ``out/model.onnx`` (fp32)."""
    _check_transformers()
    from optimum.exporters.onnx import main_export

    main_export(
        str(checkpoint),
        output=out,
        task="feature-extraction",
        library_name="sentence_transformers",
        do_validation=False,
        local_files_only=True,
    )
    onnx_path: Path = out / ONNX_FILE
    return onnx_path


def calibration_texts(checkpoint: Path, count: int, corpus: Path = CALIBRATION) -> list[str]:
    """``count`` calibration texts spread evenly over the corpus (queries, documents, code
    and languages alike), with the prompts retrieval gives them.

    Calibration text is never fidelity text, so a recipe cannot be tuned to its own test.
    """
    table = PromptTable.from_file(checkpoint / PROMPTS_FILE)
    calib = load_corpus(corpus)
    texts = [table.prompt(t) + x for t, x in zip(calib.tasks(), calib.texts, strict=True)]
    picks = np.linspace(0, len(texts) - 1, num=min(count, len(texts))).round().astype(int)
    return [texts[i] for i in dict.fromkeys(picks.tolist())]


def _build_graph(
    fp32_model: Path, folder: Path, variant: str, checkpoint: Path, steps: Steps
) -> dict[str, Any]:
    """Write ``folder/model.onnx`` (+ ``model.onnx.data``) by the variant's recipe."""
    from .build import build_variant
    from .recipe import load_recipes

    recipe = load_recipes()[variant]
    tokenizer = Tokenizer(checkpoint / TOKENIZER_FILE)

    def tokenize(texts: Sequence[str]) -> list[list[int]]:
        return [ids.tolist() for ids in tokenizer.encode(texts, MAX_LENGTH).ids]

    texts = None
    if recipe.calibrated():
        texts = calibration_texts(checkpoint, recipe.calibration_samples)
    steps(f"building the {variant} graph by its recipe"
          + (" (calibration first, then smoothing and quantisation)" if texts else ""))
    if texts:
        count = len(texts[: recipe.calibration_samples])
        with steps.count("calibrating", count, "texts") as done:
            build_variant(fp32_model, folder / ONNX_FILE, recipe, texts, tokenize, done)
    else:
        build_variant(fp32_model, folder / ONNX_FILE, recipe, texts, tokenize)
    record: dict[str, Any] = recipe.record()
    return record


def export_variant(
    model: str | Path = DEFAULT_MODEL,
    variant: str = "fp32",
    out: Path | None = None,
    progress: Progress | None = None,
    if_missing: bool = False,
    allow_below_bar: bool = False,
    corpus: Path = CORPUS,
    verbose: bool = False,
) -> Path:
    """Build ``variant`` of ``model`` into ``out`` (default: its store folder).

    The variant is measured against the fp32 reference; one that misses its bar
    raises :class:`BelowBarError` and is not installed, unless ``allow_below_bar``.
    A lock file beside the target serialises concurrent builds of one variant;
    with ``if_missing`` a variant another process finished meanwhile is kept, unless it is
    stale (built by an older pipeline or recipe: ``Manifest.stale``).
    ``progress``: a :class:`Steps` or any ``say(message)`` (default: lines and bars on
    stderr); ``verbose``: show the output and warnings of torch and the exporter.
    """
    check_variant(variant)
    steps = progress if isinstance(progress, Steps) else Steps(progress)
    target = Path(out) if out else variant_dir(model, variant)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if if_missing and is_variant_dir(target) and not Manifest.read(target).stale():
            return target
        _build(model, variant, target, steps, allow_below_bar, corpus, verbose)
    steps(f"{variant} variant ready in {target}")
    return target


def build_missing(model: str | Path, variant: str) -> Path:
    """The runtime's way to build a variant it cannot find: the entry point
    ``embgemma_plugins.builders: onnx`` (pyproject.toml), so the runtime never imports this
    layer. Builds into the store unless another process finished it meanwhile."""
    verbose = os.environ.get(ENV_VERBOSE, "") not in ("", "0")
    return export_variant(model, variant, if_missing=True, verbose=verbose)


def _peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished children, in MB."""
    kb = max(
        resource.getrusage(who).ru_maxrss
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return round(kb / 1024, 1)


def _build(
    model: str | Path,
    variant: str,
    target: Path,
    steps: Steps,
    allow_below_bar: bool,
    corpus: Path,
    verbose: bool,
) -> None:
    started = time.monotonic()
    checkpoint, model_id, revision = resolve_checkpoint(model)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}-", dir=target.parent) as tmp:
        work, folder = Path(tmp) / "optimum", Path(tmp) / "variant"
        folder.mkdir()
        steps(f"exporting {model_id} to ONNX with Optimum (the fp32 graph, in a child "
              "process whose memory is returned when it ends)")
        run("optimum", [str(checkpoint), str(work)], verbose=verbose)
        recipe = _build_graph(work / ONNX_FILE, folder, variant, checkpoint, steps)
        shutil.rmtree(work)
        for name in (TOKENIZER_FILE, PROMPTS_FILE):
            shutil.copy2(checkpoint / name, folder / name)
        fidelity = measure_variant(folder, variant, checkpoint, revision, target.parent, corpus,
                                   steps, verbose)
        prompts = json.loads((checkpoint / PROMPTS_FILE).read_text(encoding="utf-8"))["prompts"]
        manifest = Manifest(
            model_id=model_id,
            revision=revision,
            variant=variant,
            recipe=recipe,
            recipe_sha256=recipe_digest(info(variant).table),
            versions=package_versions(),
            prompts=prompts,
            fidelity=fidelity,
            build={"seconds": round(time.monotonic() - started, 1), "peak_rss_mb": _peak_rss_mb()},
        )
        manifest.record_files(folder)
        manifest.write(folder)
        if fidelity["shortfalls"] and not allow_below_bar:
            raise BelowBarError(
                f"the {variant} variant of {model_id} misses its fidelity bar: "
                f"{'; '.join(fidelity['shortfalls'])}. It was not installed; pass "
                "--allow-below-bar (allow_below_bar=True) to keep it anyway."
            )
        if target.exists():
            shutil.rmtree(target)
        folder.rename(target)
