"""Resolving Hugging Face repositories: the local cache first, the hub second.

``HF_HUB_OFFLINE=1`` keeps everything in the cache.  google/embeddinggemma-300m is
gated, so the one failure every new user meets (no token, licence not accepted) is
turned into a message that says exactly what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import hf_hub_download, snapshot_download, try_to_load_from_cache
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
)

from embgemma_plugins.errors import ModelNotFoundError


def _login_hint(repo_id: str) -> str:
    return (
        f"{repo_id} is gated or private: accept its licence at "
        f"https://huggingface.co/{repo_id} and log in with `hf auth login` "
        "(or set HF_TOKEN) on this machine"
    )


def _fetch_error(repo_id: str, error: Exception) -> ModelNotFoundError:
    if isinstance(error, GatedRepoError):
        return ModelNotFoundError(_login_hint(repo_id))
    if isinstance(error, RepositoryNotFoundError):
        return ModelNotFoundError(
            f"{repo_id} was not found on the Hugging Face hub (or it is private: "
            "log in with `hf auth login`)"
        )
    return ModelNotFoundError(
        f"{repo_id} is not in the local Hugging Face cache and could not be downloaded "
        f"({type(error).__name__}: {error}). Connect to the hub once, or copy the model "
        "into the cache; HF_HUB_OFFLINE=1 uses only the cache."
    )


def snapshot(
    repo_id: str, revision: str | None = None, allow_patterns: Sequence[str] | None = None
) -> Path:
    """Local folder of ``repo_id`` (cache first, then the hub unless offline)."""
    patterns = list(allow_patterns) if allow_patterns else None
    try:
        return Path(
            snapshot_download(
                repo_id, revision=revision, allow_patterns=patterns, local_files_only=True
            )
        )
    except LocalEntryNotFoundError:
        pass
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as e:
        raise _fetch_error(repo_id, e) from e


def download(
    repo_id: str, filename: str, revision: str | None = None, force: bool = False
) -> Path | None:
    """One file of ``repo_id``, or ``None`` when the repository has no such file; ``force``
    downloads it again even if the cache has it (a damaged cached copy)."""
    if not force:
        try:
            return Path(
                hf_hub_download(repo_id, filename, revision=revision, local_files_only=True)
            )
        except LocalEntryNotFoundError:
            pass
        except EntryNotFoundError:
            return None
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, force_download=force))
    except EntryNotFoundError:
        return None
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as e:
        raise _fetch_error(repo_id, e) from e


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` keeps huggingface_hub to the local cache."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cached(repo_id: str, filename: str, revision: str | None = None) -> Path | None:
    """``filename`` of ``repo_id`` if the local cache has it (never touches the network)."""
    found = try_to_load_from_cache(repo_id, filename, revision=revision)
    return Path(found) if isinstance(found, str) else None
