"""The package version (a leaf: the worker registry, metrics, tracing and doctor read it without
importing the package root)."""

__version__ = "0.1.0"
