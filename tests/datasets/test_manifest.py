"""Dataset card helpers."""

from __future__ import annotations

from consentry.datasets.manifest import size_category


def test_size_categories() -> None:
    assert size_category(0) == "n<1K"
    assert size_category(999) == "n<1K"
    assert size_category(1000) == "1K<n<10K"
    assert size_category(4_838_037) == "1M<n<10M"
    assert size_category(10**12) == "n>1B"
