"""Developer-only benchmark scripts: A/B comparisons, kernel and attention timings, profiles.

Not installed with the package; run them from a checkout (``python -m benchmarks.kernels``).
The benchmark that users run, ``embgemma bench``, lives in :mod:`embgemma_plugins.bench`.
"""
