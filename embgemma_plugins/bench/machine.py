"""The machine and package versions a benchmark ran on (for docs/benchmarks.md)."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

PACKAGES = ("embgemma-plugins", "onnxruntime", "numpy", "sentence-transformers",
            "transformers", "torch")


def lscpu() -> dict[str, str]:
    """``lscpu`` fields (empty where lscpu is missing, e.g. on macOS)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    pairs = (line.split(":", 1) for line in out.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def cpu_summary() -> dict[str, str]:
    """CPU model, logical/physical cores, the SIMD that matters here, and the load."""
    info = lscpu()
    flags = set(info.get("Flags", "").split())
    simd = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16")
            if f in flags]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = "?"
    if info.get("Core(s) per socket", "").isdigit() and info.get("Socket(s)", "").isdigit():
        cores = str(int(info["Core(s) per socket"]) * int(info["Socket(s)"]))
    return {
        "model": info.get("Model name", platform.processor() or platform.machine()),
        "cpus": f"{cpus} usable CPUs, {cores} physical cores",
        "simd": ", ".join(simd) or "-",
        "os": f"{platform.system()} {platform.release()}",
    }


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "-"


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found
