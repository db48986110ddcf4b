"""The ``embgemma`` command line."""
