"""``embgemma models``, ``embgemma tasks`` and ``embgemma info``."""

from __future__ import annotations

import json
import os
import platform
from typing import Any

import click

from embgemma_plugins.errors import EmbeddingGemmaError
from embgemma_plugins.store.layout import DEFAULT_MODEL, list_variants, store_root
from embgemma_plugins.store.registry import variants


def human_size(n: int) -> str:
    """Decimal units, as the fidelity bars state sizes (1 MB = 10**6 bytes)."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def fidelity_text(fidelity: dict[str, Any] | None) -> str:
    """``mean 0.99950 min 0.99900 top10 0.9800 (meets bar)`` at 768 dims, from the manifest."""
    if not fidelity:
        return "not measured"
    full = fidelity.get("figures", {}).get("768")
    if not isinstance(full, dict):
        return "not measured"
    verdict = "meets bar" if fidelity.get("passed") else "BELOW BAR"
    return (
        f"mean {full['mean_cosine']:.5f} min {full['min_cosine']:.5f} "
        f"top10 {full['top10_overlap']:.4f} ({verdict})"
    )


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, *rows]]
    return "\n".join(lines)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--verify", is_flag=True,
              help="Hash every file again, trusting no earlier check (exit code 1 if any "
              "file is damaged; without it, files unchanged since their last check are "
              "trusted).")
def models(as_json: bool, verify: bool) -> None:
    """List the model variants in the model store ($EMBGEMMA_HOME), checking each
    file against its manifest (a damaged variant is listed as DAMAGED, exit code 1; one
    built by an older pipeline or recipe as STALE, with the command that rebuilds it).

    \b
    Examples:
      embgemma models
      embgemma models --verify
      embgemma models --json | jq '.[].path'
    """
    from embgemma_plugins.store.resolve import repair_command
    from embgemma_plugins.store.verify import check_folder

    found = list_variants()
    damage = {v.path: check_folder(v.path, v.manifest, use_stamps=not verify).bad
              for v in found}
    stale = {v.path: v.manifest.stale() for v in found}
    if as_json:
        click.echo(json.dumps([
            {"model": v.manifest.model_id, "revision": v.manifest.revision,
             "variant": v.manifest.variant, "size_bytes": v.size_bytes,
             "fidelity": v.manifest.fidelity, "path": str(v.path),
             "damaged": damage[v.path], "stale": stale[v.path]} for v in found], indent=2))
    elif not found:
        click.echo(f"no variants in {store_root()}; build one with: embgemma export --variant fp32")
    else:
        rows = [[v.manifest.model_id, v.manifest.variant, human_size(v.size_bytes),
                 "DAMAGED" if damage.get(v.path) else
                 "STALE" if stale[v.path] else fidelity_text(v.manifest.fidelity),
                 str(v.path)] for v in found]
        click.echo(table(rows, ["MODEL", "VARIANT", "SIZE", "FIDELITY", "PATH"]))
    bad = [v for v in found if damage.get(v.path)]
    for v in bad:
        files = "; ".join(f"{name}: {why}" for name, why in damage[v.path].items())
        click.echo(f"damaged: {v.path}: {files}\n  replace it with: "
                   f"{repair_command(v.path, v.manifest)}", err=True)
    for v in found:
        if stale[v.path] and not damage.get(v.path):
            click.echo(f"stale: {v.path}: {stale[v.path]}\n  rebuild it with: "
                       f"{repair_command(v.path, v.manifest)} (or use it once with the export "
                       "extra installed: it is rebuilt first)", err=True)
    if verify and not as_json:
        click.echo(f"verified {len(found) - len(bad)} of {len(found)} variant(s)", err=True)
    if bad:
        raise SystemExit(1)


@click.command()
@click.option("--model", default=DEFAULT_MODEL, show_default=True,
              help="Hub id or local model folder whose prompt table to show.")
@click.option("--variant", type=click.Choice(variants()), help="Store variant to read it from.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def tasks(model: str, variant: str | None, as_json: bool) -> None:
    """Show the task names accepted by --task and the prompt each one adds.

    \b
    Examples:
      embgemma tasks
      embgemma embed questions.txt q.parquet --task query
    """
    from embgemma_plugins.prompts import PROMPTS_FILE, PromptTable
    from embgemma_plugins.store import hub
    from embgemma_plugins.store.resolve import load_prompt_table, locate

    try:
        try:
            prompts = load_prompt_table(locate(model, variant, build_missing=False))
        except EmbeddingGemmaError:
            found = hub.download(model, PROMPTS_FILE)
            if found is None:
                raise
            prompts = PromptTable.from_file(found)
    except EmbeddingGemmaError as e:
        raise click.ClickException(f"cannot read the prompt table of {model}: {e}") from e
    pairs = {name: prompts.prompt(name) for name in prompts.names()}
    if as_json:
        click.echo(json.dumps(pairs, indent=2, ensure_ascii=False))
        return
    click.echo(table([[n, repr(p)] for n, p in pairs.items()], ["TASK", "PROMPT"]))
    click.echo("\nDocuments with a title (--title-field): 'title: {title} | text: '")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(as_json: bool) -> None:
    """Show the version, ONNX Runtime providers, CPU threads and the model store path.

    \b
    Examples:
      embgemma info
      embgemma info --json
    """
    import onnxruntime as ort

    from embgemma_plugins import __version__
    from embgemma_plugins.session import available_providers

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    data = {
        "embgemma-plugins": __version__, "python": platform.python_version(),
        "onnxruntime": ort.__version__, "providers": available_providers(),
        "cpus": cpus, "store": str(store_root()),
        "variants": len(list_variants()),
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"embgemma-plugins {__version__} (python {data['python']}, "
               f"onnxruntime {data['onnxruntime']})")
    click.echo(f"providers: {', '.join(data['providers'])}")
    click.echo(f"cpus: {cpus} (ONNX Runtime uses one intra-op thread per physical core "
               "unless --threads is given)")
    click.echo(f"model store: {data['store']} ({data['variants']} variant(s); "
               "override with EMBGEMMA_HOME)")
