"""Write onnx_models/data/gaussian3d_4096.npz: the fixed codebook of the "vq3" table format.

4096 points for the standard Gaussian in 3-D, by k-means (Lloyd) on 2,000,000 seeded
Gaussian samples (onnx_models/vqtable.py, `gaussian_codebook`). It is fitted to no model:
rotated table rows are close to i.i.d. Gaussian, whatever checkpoint they come from.
About two minutes on two cores. Run: .venv/bin/python scripts/build_codebook.py
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from embgemma_plugins.onnx_models.vqtable import CODEBOOK, gaussian_codebook


def main() -> None:
    book = gaussian_codebook()
    probe = np.random.default_rng(1).standard_normal((500_000, book.shape[1]))
    _, nearest = cKDTree(book).query(probe, workers=-1)
    mse = float(((book[nearest] - probe) ** 2).mean())
    np.savez_compressed(CODEBOOK, codebook=book)
    print(f"{CODEBOOK}: {len(book)} points, mean squared error per value {mse:.5f} (N(0, 1))")


if __name__ == "__main__":
    main()
