"""One loaded model per distinct :class:`~embgemma_plugins.settings.ModelSettings` in a
process: framework objects, pipelines and servers that describe the same model share its
ONNX session (weakly held: it closes when the last holder goes)."""

from __future__ import annotations

import threading
import weakref

from embgemma_plugins.model import EmbeddingGemma
from embgemma_plugins.settings import ModelSettings

_SHARED: weakref.WeakValueDictionary[ModelSettings, EmbeddingGemma] = (
    weakref.WeakValueDictionary()
)
_LOCK = threading.Lock()


def shared_model(settings: ModelSettings) -> EmbeddingGemma:
    """The process's model for ``settings``, opened if no live object holds one."""
    try:
        hash(settings)
    except TypeError:  # provider options given as dicts: not shareable, open one
        return EmbeddingGemma.from_settings(settings)
    with _LOCK:
        found = _SHARED.get(settings)
        if found is None:
            found = EmbeddingGemma.from_settings(settings)
            _SHARED[settings] = found
        return found
