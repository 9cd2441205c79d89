"""Providers: one module per upstream API, pure translation plus one I/O seam (``_upstream``).

``registry`` is the one place that names providers.
"""
