"""The batch-job engine behind ``embgemma embed``: a library, no click.

Rows are read (:mod:`.readers`, :mod:`.records`), cut into deterministic chunks and embedded
(:mod:`.job`), each chunk written as a part of OUT's work folder (:mod:`.workdir`,
:mod:`.parts`), and the parts assembled into OUT (:mod:`.finish`, :mod:`.merge`,
:mod:`.output`, :mod:`.quantise`). :mod:`.plan` holds the options and the usage checks both
engines share; :func:`.local.run_local` runs a job here, ``embgemma_plugins.ray.engine``
on Ray. Errors are the project's own (:mod:`embgemma_plugins.errors`); progress goes to a
:class:`.progress.ProgressSink` the caller supplies.
"""
