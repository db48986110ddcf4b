"""What the driver knows of the model, and what it ships to every actor.

The driver resolves the model once (building a missing store variant there, never
in a hundred actors at once) and reads its prompt table and manifest, but loads no
ONNX session: on a cluster the head node should not need the memory of a worker.
Actors get the job's :class:`~embgemma_plugins.settings.ModelSettings` (small, picklable,
``build_missing=False``, the driver's repository of prebuilt variants named explicitly)
and load their session from it; an actor whose machine lacks the variant gets the
driver's folder (``ray/ship.py``), never a build.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embgemma_plugins.errors import RowError
from embgemma_plugins.prompts import PromptTable, choose_prompt
from embgemma_plugins.store.resolve import ModelFiles, load_prompt_table, locate


def bad_row_message(error: BaseException) -> str | None:
    """The message of a :class:`~embgemma_plugins.errors.RowError` raised in an actor,
    however Ray wrapped it."""
    seen: set[int] = set()
    todo: list[Any] = [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, RowError):
            return str(e)
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
    text = str(error)  # Ray could not unpickle the cause: only its traceback text is left
    if "RowError: " in text:
        return text.split("RowError: ", 1)[1].splitlines()[0]
    return None


@dataclass(frozen=True)
class ModelInfo:
    """The driver's view of the model: files, manifest facts and prompt table."""

    given: str  # as the user wrote it (output metadata names it so)
    model: str  # what actors are given: a hub id, or an absolute folder
    files: ModelFiles
    variant: str
    revision: str | None
    prompts: PromptTable

    @classmethod
    def resolve(cls, model: str, variant: str | None, variants_repo: str | None = None,
                revision: str | None = None) -> ModelInfo:
        folder = Path(model).expanduser()
        name = str(folder.resolve()) if folder.is_dir() else model  # workers' cwd differs
        files = locate(model, variant, True, variants_repo, revision)
        manifest = files.manifest
        return cls(model, name, files, manifest.variant if manifest else (variant or "fp32"),
                   manifest.revision if manifest else None, load_prompt_table(files))

    @property
    def model_id(self) -> str:
        """The model named in output metadata (the local engine's rule)."""
        return self.files.manifest.model_id if self.files.manifest else self.given

    @property
    def onnx_sha256(self) -> Any:
        return self.files.manifest.files.get("model.onnx") if self.files.manifest else None

    def prompt_for(self, task: str | None = None, prompt: str | None = None) -> str:
        """The rule of :meth:`EmbeddingGemma.prompt_for`, without a session."""
        return choose_prompt(lambda: self.prompts, task, prompt)
