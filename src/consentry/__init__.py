"""Consentry: decide whose content may flow into AI, enforce it, and prove it."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("consentry")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
