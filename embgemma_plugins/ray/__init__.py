"""EmbeddingGemma on Ray Data: the same embedding job, spread over a cluster.

``embed_dataset(dataset, ...)`` maps a ``ray.data.Dataset`` of texts through a pool
of actors, each holding one ONNX Runtime session (loaded once per actor, with as
many intra-op threads as the CPUs Ray reserves for it, so actors never fight over
cores).  ``embgemma embed IN OUT --engine ray`` runs the CLI's job this way and
writes the local engine's file (see ``docs/ray.md``).

Ray is an optional extra: importing this package never imports Ray; using it
without Ray raises an ImportError that names the extra to install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from embgemma_plugins.ray.extra import INSTALL_HINT, require_ray

if TYPE_CHECKING:
    from embgemma_plugins.ray.dataset import embed_dataset

__all__ = ["INSTALL_HINT", "embed_dataset", "require_ray"]


def __getattr__(name: str) -> Any:
    if name == "embed_dataset":
        from embgemma_plugins.ray.dataset import embed_dataset

        return embed_dataset
    raise AttributeError(f"module 'embgemma_plugins.ray' has no attribute {name!r}")
