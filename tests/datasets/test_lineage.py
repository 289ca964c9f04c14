"""Roaring bitmaps of ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from consentry.datasets.lineage import bitmap_of, ids_of, read_bitmap, write_bitmap
from consentry.errors import IntegrityFailure, InvalidInput


def test_bitmaps_round_trip(tmp_path: Path) -> None:
    ids = np.array([5, 3, 3, 2**32 + 1, 2**40, 0, 2**63 - 1], dtype=np.int64)
    bitmap = bitmap_of(ids)
    assert ids_of(bitmap).tolist() == sorted(set(ids.tolist()))
    write_bitmap(tmp_path / "l" / "b.roaring", bitmap)
    assert read_bitmap(tmp_path / "l" / "b.roaring") == bitmap
    assert len(bitmap_of(np.array([], dtype=np.int64))) == 0
    dense = np.arange(1, 200_000, dtype=np.int64)
    assert ids_of(bitmap_of(dense)).tolist() == dense.tolist()


def test_bad_ids_and_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        bitmap_of(np.array([-1], dtype=np.int64))
    (tmp_path / "bad").write_bytes(b"nope")
    with pytest.raises(IntegrityFailure):
        read_bitmap(tmp_path / "bad")
    with pytest.raises(IntegrityFailure):
        read_bitmap(tmp_path / "missing")
