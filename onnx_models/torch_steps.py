"""The child side of ``child.py``: the build's torch steps, run as
``python -m embgemma_plugins.onnx_models.torch_steps JOB ARGS...``.

``optimum CHECKPOINT OUT``: the Optimum export of the whole sentence-transformers pipeline,
lean (:func:`lean_export`), its weights in ``OUT/model.onnx.data`` and the token-embedding
table in ``OUT/embedding-table.npy``.
``reference CHECKPOINT CORPUS OUT.npy``: sentence-transformers' vectors of the corpus.
Counts go to stdout as ``@embgemma done N`` lines (``child.PREFIX``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from onnx.external_data_helper import set_external_data

from .child import PREFIX


def _tick(n: int) -> None:
    print(f"{PREFIX}{n}", flush=True)


#: Rows of the token-embedding table the exporter sees (the real table is spliced in after):
#: a prime, so no other weight of the model shares the table's shape.
STAND_IN_ROWS = 31


def lean_export(checkpoint: Path, out: Path) -> Path:
    """The Optimum export of ``optimum_export``, with the token-embedding table (262144 x 768:
    805 MB of the 1.2 GB of weights) held aside on disk.

    The TorchScript exporter holds several copies of every weight at once (the torch model,
    its protobuf, the serialised bytes, their Python copy, a parse of them): 4.5 to 5.5 GB
    with the table, which it only ever copies. So the exporter gets a table of its first
    ``STAND_IN_ROWS`` rows (and the model config a vocabulary of as many, for the exporter's
    dummy inputs), and the graph then reads the real table from the ``.npy`` file it was held
    in (:func:`refer_to`): the same graph once loaded, less than half the memory. Returns
    ``out/model.onnx``, its weights in ``model.onnx.data`` and ``embedding-table.npy``."""
    import numpy as np
    import torch
    from optimum.exporters.tasks import TasksManager

    from . import graph as G
    from .export import optimum_export

    out.mkdir(parents=True, exist_ok=True)
    held = out / "embedding-table.npy"
    load = TasksManager.get_model_from_task

    def load_and_set_aside(*args: object, **kwargs: object) -> object:
        model = load(*args, **kwargs)
        transformer = model[0].auto_model
        embedding = transformer.get_input_embeddings()
        np.save(held, embedding.weight.detach().numpy())
        embedding.weight = torch.nn.Parameter(embedding.weight[:STAND_IN_ROWS].clone(), False)
        embedding.num_embeddings = STAND_IN_ROWS
        transformer.config.vocab_size = STAND_IN_ROWS
        return model

    TasksManager.get_model_from_task = load_and_set_aside
    try:
        onnx_path = optimum_export(checkpoint, out)
    finally:
        TasksManager.get_model_from_task = load
    model = G.load(onnx_path)
    table = np.load(held, mmap_mode="r")
    gathered = {n.input[0] for n in model.graph.node if n.op_type == "Gather"}
    stand_ins = [t for t in model.graph.initializer if t.name in gathered
                 and list(t.dims) == [STAND_IN_ROWS, table.shape[1]]]
    if len(stand_ins) != 1:
        raise RuntimeError(f"expected one {STAND_IN_ROWS}-row embedding table in the export, "
                           f"found {[t.name for t in stand_ins]}")
    refer_to(stand_ins[0], table, held.name)
    del table
    G.save(model, onnx_path)  # the other weights into model.onnx.data; the table stays put
    return onnx_path


def refer_to(tensor: Any, table: Any, location: str) -> None:
    """Make ``tensor`` the array ``table`` (a ``.npy`` file mapped by ``np.load(mmap_mode="r")``)
    in place: ONNX external data at the array's offset in its file. Copying the 805 MB table
    into the graph instead (its bytes, then protobuf's copy of them) took 1.6 GB."""
    if table.dtype.str != "<f4" or not table.flags.c_contiguous:
        raise RuntimeError(f"the held embedding table is {table.dtype.str}, not C-order <f4")
    tensor.dims[:] = table.shape
    set_external_data(tensor, location, table.offset, table.nbytes)  # needs raw_data: then clear
    tensor.ClearField("raw_data")


def main(argv: list[str]) -> None:
    job, *args = argv
    if job == "optimum":  # CHECKPOINT OUT: OUT/model.onnx, its weights in model.onnx.data
        lean_export(Path(args[0]), Path(args[1]))
    elif job == "reference":  # CHECKPOINT CORPUS OUT.npy
        import numpy as np

        from .corpus import load_corpus
        from .reference import st_vectors

        vectors = st_vectors(Path(args[0]), load_corpus(Path(args[1])), _tick)
        np.save(args[2], vectors)
    else:
        raise SystemExit(f"unknown job {job!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
