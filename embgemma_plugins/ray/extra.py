"""Whether the ``ray`` extra is installed: checked without importing Ray."""

from __future__ import annotations

import importlib.util

INSTALL_HINT = "pip install 'embgemma-plugins[ray]'"


def require_ray() -> None:
    """Raise ImportError naming the extra when Ray Data is not installed."""
    try:
        missing = importlib.util.find_spec("ray") is None or (
            importlib.util.find_spec("ray.data") is None)
    except (ImportError, ValueError):  # ``ray`` set to None in sys.modules, or broken
        missing = True
    if missing:
        raise ImportError(f"the Ray engine needs Ray Data: {INSTALL_HINT}")
