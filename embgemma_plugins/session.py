"""ONNX Runtime sessions: provider selection, session options, running a batch.

Providers are chosen by pure functions over the list ONNX Runtime reports, so the
rules (aliases, the automatic preference order, errors that list what is
available) are the same on a laptop and on a GPU server and can be tested on
either.  Outputs are selected by name (``sentence_embedding``), never by position:
exports differ in which other outputs they carry and in what order.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from embgemma_plugins.errors import InvalidArgumentError, ModelNotFoundError
from embgemma_plugins.unpack4 import is_packed, load_packed

OUTPUT_NAME = "sentence_embedding"
#: Every token's state through the Dense head, for late chunking (a recipe's optional output).
TOKEN_STATES = "token_states"
CPU = "CPUExecutionProvider"

#: Short names accepted wherever a provider is (the CLI's ``--provider cuda``).
ALIASES: Mapping[str, str] = {
    "cpu": CPU,
    "cuda": "CUDAExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "directml": "DmlExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}

#: What ``auto`` picks, best first.  Providers that may silently run in float16
#: (CoreML, TensorRT with its fp16 switch) are left to an explicit choice:
#: EmbeddingGemma's activations overflow float16.
AUTO_ORDER: tuple[str, ...] = (
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "DmlExecutionProvider",
    CPU,
)

ProviderSpec = str | tuple[str, dict[str, Any]]


def available_providers() -> list[str]:
    """Providers this onnxruntime build can run here."""
    return list(ort.get_available_providers())


def resolve_providers(
    requested: str | Sequence[ProviderSpec] | None,
    available: Sequence[str],
    known: Sequence[str] | None = None,
) -> list[ProviderSpec]:
    """Turn a user's provider request into the list given to ONNX Runtime.

    ``None`` or ``"auto"`` picks the best available provider (GPU before CPU).
    A name may be an alias (``cuda``) or a full provider name, or a
    ``(name, options)`` pair.  Unknown names and providers this build lacks raise
    :class:`InvalidArgumentError` listing what is available.  The CPU provider is
    always appended as the fallback for operators a GPU provider does not cover.
    """
    known = list(known) if known is not None else list(ort.get_all_providers())
    if requested is None or (isinstance(requested, str) and requested.lower() == "auto"):
        best = next((p for p in AUTO_ORDER if p in available), None)
        if best is None:
            raise InvalidArgumentError(f"no usable provider; available: {', '.join(available)}")
        return [best] if best == CPU else [best, CPU]
    items: Sequence[ProviderSpec] = (
        [requested] if isinstance(requested, (str, tuple)) else requested
    )
    if not items:
        raise InvalidArgumentError("providers must not be empty (use None or 'auto')")
    resolved: list[ProviderSpec] = []
    for item in items:
        name, options = (item, None) if isinstance(item, str) else item
        full = ALIASES.get(name.lower(), name) if isinstance(name, str) else name
        if full not in known:
            raise InvalidArgumentError(
                f"unknown provider {name!r}; available here: {', '.join(available)} "
                f"(aliases: {', '.join(sorted(ALIASES))}, or 'auto')"
            )
        if full not in available:
            hint = (
                " Install the GPU build: pip install 'embgemma-plugins[gpu]' "
                "(and uninstall the CPU-only onnxruntime)."
                if full in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
                else ""
            )
            raise InvalidArgumentError(
                f"provider {full} is not available in this onnxruntime build; "
                f"available: {', '.join(available)}.{hint}"
            )
        resolved.append(full if options is None else (full, dict(options)))
    if CPU not in [p if isinstance(p, str) else p[0] for p in resolved]:
        resolved.append(CPU)
    return resolved


def session_options(threads: int | None) -> ort.SessionOptions:
    """Options for an embedding session; ``threads`` caps intra-op threads."""
    if threads is not None and threads < 1:
        raise InvalidArgumentError(f"threads must be a positive integer, got {threads}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    # A memory pattern is planned per input shape, and the first run of a shape seen
    # before allocates the planned block beside the arena's chunks of the previous runs:
    # each batch size costs its peak twice over (measured: 32 x 64 tokens, 170 -> 347 MB of
    # arena on the second run). Batches vary in shape, so plan-free allocation is leaner and
    # no slower (int8, 660 documents, interleaved A/B).
    opts.enable_mem_pattern = False
    if threads is not None:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = int(os.environ.get("EMBGEMMA_ORT_LOG_LEVEL", "3"))
    return opts


def create_session(
    model_path: str | Path,
    providers: str | Sequence[ProviderSpec] | None = None,
    threads: int | None = None,
) -> ort.InferenceSession:
    """Open ``model_path`` on the resolved providers and check the graph's outputs."""
    resolved = resolve_providers(providers, available_providers())
    opts = session_options(threads)
    try:
        if is_packed(Path(model_path)):  # 4-bit codes on disk, int8 weights built here
            with load_packed(Path(model_path), opts) as (graph, arrays):
                session = ort.InferenceSession(graph, sess_options=opts, providers=resolved)
                session._embgemma_weights = arrays  # read-only folder: arrays ORT reads in place
        else:
            session = ort.InferenceSession(str(model_path), sess_options=opts, providers=resolved)
    except (OSError, ValueError, ort_errors.Fail, ort_errors.InvalidProtobuf,
            ort_errors.InvalidGraph, ort_errors.NoSuchFile, ort_errors.RuntimeException) as e:
        raise ModelNotFoundError(
            f"ONNX Runtime cannot load {model_path} ({type(e).__name__}: {str(e)[:300]}); the "
            "file or its external data is damaged or incomplete: rebuild or re-download it"
        ) from None
    first = resolved[0] if isinstance(resolved[0], str) else resolved[0][0]
    if first not in session.get_providers():
        # ONNX Runtime falls back to CPU with only a log line when, e.g., CUDA
        # libraries are missing; an explicit request must not degrade silently.
        raise InvalidArgumentError(
            f"{first} could not be initialised (session runs on {session.get_providers()}); "
            "check that the CUDA/cuDNN libraries this onnxruntime build needs are installed"
        )
    outputs = [o.name for o in session.get_outputs()]
    if OUTPUT_NAME not in outputs:
        raise InvalidArgumentError(
            f"{model_path} has no '{OUTPUT_NAME}' output (outputs: {', '.join(outputs)}); "
            "export the whole sentence-transformers pipeline, not only the transformer"
        )
    return session


def run_batch(
    session: ort.InferenceSession,
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    output: str = OUTPUT_NAME,
) -> np.ndarray:
    """Run one padded batch, feeding inputs by name; returns float32 (n, 768), or with
    ``output=TOKEN_STATES`` (n, tokens, 768)."""
    feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
    names = [i.name for i in session.get_inputs()]
    missing = [n for n in names if n not in feeds]
    if missing:
        raise InvalidArgumentError(f"the model needs inputs this runtime cannot feed: {missing}")
    if output != OUTPUT_NAME and output not in [o.name for o in session.get_outputs()]:
        raise InvalidArgumentError(
            f"this variant has no '{output}' output; rebuild it with a recipe that lists "
            f"'{output}' in its outputs (embgemma export)"
        )
    (out,) = session.run([output], {n: feeds[n] for n in names})
    return np.asarray(out, dtype=np.float32)
