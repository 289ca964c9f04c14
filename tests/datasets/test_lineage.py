"""Roaring bitmaps of ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.datasets.lineage import (
    bitmap_of,
    count_of,
    ids_of,
    read_bitmap,
    read_by_author,
    records_of,
    write_bitmap,
    write_by_author,
)
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


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 10**12)), max_size=80, unique_by=lambda p: p[1]
    ),
    asked=st.lists(st.integers(-1, 32), max_size=6),
)
def test_the_author_index_names_exactly_each_authors_records(
    tmp_path_factory: pytest.TempPathFactory, pairs: list[tuple[int, int]], asked: list[int]
) -> None:
    path = tmp_path_factory.mktemp("index") / "by-author.npy"
    authors = np.array([a for a, _ in pairs], dtype=np.int64)
    records = np.array([r for _, r in pairs], dtype=np.int64)
    write_by_author(path, author_ids=authors, record_ids=records)
    index = read_by_author(path)
    assert sorted(map(tuple, index.tolist())) == sorted(pairs)
    found_authors, found_records = records_of(index, np.array(asked, dtype=np.int64))
    expected = sorted((a, r) for a, r in pairs if a in set(asked))
    assert sorted(zip(found_authors.tolist(), found_records.tolist(), strict=True)) == expected
    for author in set(asked):
        assert count_of(index, author) == sum(1 for a, _ in pairs if a == author)


def test_an_unreadable_author_index_is_an_integrity_failure(tmp_path: Path) -> None:
    (tmp_path / "bad.npy").write_bytes(b"nope")
    with pytest.raises(IntegrityFailure):
        read_by_author(tmp_path / "bad.npy")
    np.save(tmp_path / "flat.npy", np.arange(4, dtype=np.int64))
    with pytest.raises(IntegrityFailure):
        read_by_author(tmp_path / "flat.npy")
    with pytest.raises(IntegrityFailure):
        write_by_author(tmp_path / "x.npy", author_ids=np.arange(2), record_ids=np.arange(3))
