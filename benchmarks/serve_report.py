"""The Markdown table and the plot of ``benchmarks.serve`` (pure: figures in, text out)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LABELS = {"queries": "single short query", "documents": "16 documents"}


def offline_rate(results: dict[str, Any], kind: str) -> float:
    o = results["offline"][kind]
    return float(o["texts"] / o["seconds"])


def table(results: dict[str, Any]) -> str:
    naive = results.get("naive")
    lines = [
        "| requests | clients | texts/s | tokens/s | p50 ms | p99 ms | errors | mean batch "
        "| server cores busy | x offline | x one-at-a-time | one-at-a-time texts/s (p50 ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, levels in results["serve"].items():
        base = offline_rate(results, kind)
        for level, r in levels.items():
            n = naive[kind][level] if naive else None
            batch = f"{r['mean_batch']:.1f}" if r.get("mean_batch") else "-"
            lines.append(
                f"| {LABELS[kind]} | {level} | {r['texts_s']:.1f} | {r['tokens_s']:.0f} | "
                f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['errors']} | {batch} | "
                f"{r['server_cpu']:.2f} | "
                f"{r['texts_s'] / base:.2f}x | "
                + (f"{r['texts_s'] / n['texts_s']:.2f}x | {n['texts_s']:.1f} "
                   f"({n['p50_ms']:.0f}) |" if n else "- | - |"))
    o = results["offline"]
    lines += [
        "",
        f"Offline `embed` in one call: {offline_rate(results, 'queries'):.1f} queries/s "
        f"({o['queries']['texts']} queries), {offline_rate(results, 'documents'):.1f} "
        f"documents/s ({o['documents']['texts']} documents, "
        f"{o['documents']['tokens'] / o['documents']['seconds']:.0f} tokens/s).",
        f"Peak RSS: offline {o['peak_rss_mb']:.0f} MB, `embgemma serve` "
        f"{results['serve_rss_mb']:.0f} MB"
        + (f", one-at-a-time server {results['naive_rss_mb']:.0f} MB." if naive else "."),
    ]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, kind in zip(axes, ("queries", "documents"), strict=True):
        levels = list(results["serve"][kind])
        ax.plot(levels, [results["serve"][kind][x]["texts_s"] for x in levels], "o-",
                label="embgemma serve")
        if "naive" in results:
            ax.plot(levels, [results["naive"][kind][x]["texts_s"] for x in levels], "s--",
                    label="one request at a time")
        ax.axhline(offline_rate(results, kind), color="grey", linestyle=":",
                   label="offline embed (one call)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(x) for x in levels])
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("texts/s")
        ax.set_title(LABELS[kind] + " per request")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
