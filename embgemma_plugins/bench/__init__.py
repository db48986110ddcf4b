"""Throughput, latency, load time and memory of the project against sentence-transformers.

Shipped inside the package (``embgemma_plugins.bench``) so ``embgemma bench``
works on a user's machine, not only in a source checkout.  ``run`` orchestrates,
``worker`` measures one runtime in its own process, ``harness`` holds the pure
pieces, ``report`` renders Markdown and the plot, ``rss_cli`` measures the CLI path.
"""
