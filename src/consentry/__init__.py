"""Consentry: decide whose content may flow into AI, enforce it, and prove it."""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """``__version__``, read from the installed package's metadata on first use (reading it at import
    would cost every command, ``--help`` included, the import of ``importlib.metadata``)."""
    if name != "__version__":
        raise AttributeError(f"module 'consentry' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("consentry")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        found = "0.0.0"
    globals()["__version__"] = found
    return found
