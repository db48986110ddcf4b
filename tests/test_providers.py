"""Provider selection: aliases, automatic preference, and errors that list what exists."""

from __future__ import annotations

import pytest

from embgemma_plugins import EmbeddingGemma
from embgemma_plugins.errors import InvalidArgumentError
from embgemma_plugins.session import CPU, available_providers, resolve_providers

KNOWN = [
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
    "ROCMExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
    CPU,
]
GPU_BOX = ["TensorrtExecutionProvider", "CUDAExecutionProvider", CPU]
CPU_BOX = [CPU]


def test_auto_prefers_cuda_and_keeps_cpu_fallback():
    assert resolve_providers(None, GPU_BOX, KNOWN) == ["CUDAExecutionProvider", CPU]
    assert resolve_providers("auto", GPU_BOX, KNOWN) == ["CUDAExecutionProvider", CPU]
    assert resolve_providers(None, CPU_BOX, KNOWN) == [CPU]


def test_auto_never_picks_a_float16_prone_provider_by_itself():
    box = ["CoreMLExecutionProvider", CPU]
    assert resolve_providers(None, box, KNOWN) == [CPU]
    assert resolve_providers("coreml", box, KNOWN) == ["CoreMLExecutionProvider", CPU]


def test_aliases_full_names_and_options():
    assert resolve_providers("cuda", GPU_BOX, KNOWN) == ["CUDAExecutionProvider", CPU]
    assert resolve_providers(["CPU"], GPU_BOX, KNOWN) == [CPU]
    opts = {"device_id": 1}
    assert resolve_providers([("cuda", opts)], GPU_BOX, KNOWN) == [
        ("CUDAExecutionProvider", opts),
        CPU,
    ]
    assert resolve_providers(["trt", "cuda"], GPU_BOX, KNOWN) == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        CPU,
    ]


def test_unknown_provider_lists_available():
    with pytest.raises(InvalidArgumentError, match=r"unknown provider 'tpu'.*CPUExecutionProvider"):
        resolve_providers("tpu", CPU_BOX, KNOWN)


def test_unavailable_provider_says_how_to_get_it():
    with pytest.raises(InvalidArgumentError) as e:
        resolve_providers("cuda", CPU_BOX, KNOWN)
    assert "CUDAExecutionProvider is not available" in str(e.value)
    assert "available: CPUExecutionProvider" in str(e.value)
    assert "embgemma-plugins[gpu]" in str(e.value)


def test_empty_list_is_refused():
    with pytest.raises(InvalidArgumentError, match="must not be empty"):
        resolve_providers([], CPU_BOX, KNOWN)


def test_real_session_on_this_machine(tiny_model):
    m = EmbeddingGemma(tiny_model, providers="cpu", threads=1)
    assert m.providers == [CPU]
    if "CUDAExecutionProvider" not in available_providers():
        with pytest.raises(InvalidArgumentError, match="not available"):
            EmbeddingGemma(tiny_model, providers=["cuda"])
