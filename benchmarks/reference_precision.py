"""Would a float16 reference give the same fidelity figures? Measures store variants
against the shipped float32 reference and against it rounded to float16, and prints every
figure that differs (the manifest rounds cosines to 5 digits, top-10 overlap to 4)::

    python -m benchmarks.reference_precision --variant int8 --variant int4 --variant fp32
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from embgemma_plugins.onnx_models.corpus import CORPUS, load_corpus
from embgemma_plugins.onnx_models.fidelity import measure
from embgemma_plugins.onnx_models.reference import candidate_vectors, shipped_file
from embgemma_plugins.store.layout import DEFAULT_MODEL, variant_dir
from embgemma_plugins.store.manifest import Manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", required=True)
    args = parser.parse_args()
    corpus = load_corpus(CORPUS)
    for variant in args.variant:
        folder = variant_dir(DEFAULT_MODEL, variant)
        shipped = shipped_file(Manifest.read(folder).revision, corpus)
        assert shipped is not None, "no shipped reference for this revision"
        with np.load(shipped) as data:
            ref32 = data["vectors"]
        ref16 = ref32.astype(np.float16).astype(np.float32)
        cand = candidate_vectors(folder, corpus)
        a = measure(ref32, cand, corpus.is_query)
        b = measure(ref16, cand, corpus.is_query)
        moved = {d: (a[d], b[d]) for d in a if a[d] != b[d]}
        recorded = (Manifest.read(folder).fidelity or {}).get("figures")
        print(json.dumps({"variant": variant, "identical": not moved, "moved": moved,
                          "manifest_equals_float32": recorded == json.loads(json.dumps(a))},
                         indent=1))


if __name__ == "__main__":
    main()
