"""Lineage: Roaring bitmaps (pyroaring ``BitMap64``, portable serialisation) of what a release holds.

``lineage/records-<category>.roaring`` holds the record ids a release delivers, ``authors-<category>
.roaring`` the account ids of their authors, and for incremental releases ``removed-<category>.roaring``
the ids it withdraws. ``by-author-<category>.npy`` pairs each author with their records (an ``(n, 2)``
int64 array sorted by author, then record), so an opt-out names the records it revokes with a binary
search on a memory-mapped file. Later opt-outs and deletions find every release holding a record by loading
these files, which takes milliseconds.
"""

from __future__ import annotations

import array
from pathlib import Path

import numpy as np
from pyroaring import BitMap, BitMap64

from consentry.errors import IntegrityFailure, InvalidInput

LINEAGE = "lineage"


def bitmap_of(ids: np.ndarray) -> BitMap64:
    """A ``BitMap64`` of non-negative ids, built 32 bits at a time (fast for millions of ids)."""
    values = np.asarray(ids, dtype=np.int64)
    if values.size and int(values.min()) < 0:
        raise InvalidInput("lineage holds non-negative ids only", field="id")
    unsigned = values.astype(np.uint64)
    high = unsigned >> np.uint64(32)
    if not unsigned.size:
        return BitMap64()
    parts: list[bytes] = []
    keys = [0] if int(high.max()) == 0 else np.unique(high).tolist()
    for key in keys:
        low = (unsigned if len(keys) == 1 else unsigned[high == key]).astype(np.uint32)
        part = BitMap(array.array("I", low.tobytes()))
        parts.append(int(key).to_bytes(4, "little") + part.serialize())
    return BitMap64.deserialize(len(parts).to_bytes(8, "little") + b"".join(parts))


def ids_of(bitmap: BitMap64) -> np.ndarray:
    """The ids of a bitmap, ascending, as int64."""
    return np.asarray(bitmap.to_array(), dtype=np.uint64).astype(np.int64)


def write_bitmap(path: Path, bitmap: BitMap64) -> None:
    """Write a bitmap in the portable serialisation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bitmap.run_optimize()
    path.write_bytes(bitmap.serialize())


def read_bitmap(path: Path) -> BitMap64:
    """Read a bitmap written by ``write_bitmap`` (``IntegrityFailure`` if missing or unreadable)."""
    try:
        return BitMap64.deserialize(path.read_bytes())
    except (OSError, ValueError) as error:
        raise IntegrityFailure(f"cannot read lineage bitmap {path}: {error}", field="lineage") from error


def records_path(release: Path, category: str) -> Path:
    """Where a release keeps the ids of its records of ``category``."""
    return release / LINEAGE / f"records-{category}.roaring"


def authors_path(release: Path, category: str) -> Path:
    """Where a release keeps the account ids of the authors of its records of ``category``."""
    return release / LINEAGE / f"authors-{category}.roaring"


def removed_path(release: Path, category: str) -> Path:
    """Where an incremental release keeps the ids it withdraws."""
    return release / LINEAGE / f"removed-{category}.roaring"


def by_author_path(release: Path, category: str) -> Path:
    """Where a release keeps its (author, record) pairs of ``category``."""
    return release / LINEAGE / f"by-author-{category}.npy"


def write_by_author(path: Path, *, author_ids: np.ndarray, record_ids: np.ndarray) -> None:
    """Write the (author, record) pairs sorted by author, then record."""
    authors = np.asarray(author_ids, dtype=np.int64)
    records = np.asarray(record_ids, dtype=np.int64)
    if authors.shape != records.shape:
        raise IntegrityFailure("every record needs exactly one author", field="lineage")
    ordered = bool(
        np.all((authors[1:] > authors[:-1]) | ((authors[1:] == authors[:-1]) & (records[1:] >= records[:-1])))
    )
    if not ordered:  # engines deliver them in order; sort only what comes otherwise
        order = np.lexsort((records, authors))
        authors, records = authors[order], records[order]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        np.save(handle, np.stack([authors, records], axis=1))


def read_by_author(path: Path) -> np.ndarray:
    """The (author, record) pairs of a release, memory-mapped (``IntegrityFailure`` if unreadable)."""
    try:
        pairs: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise IntegrityFailure(f"cannot read lineage index {path}: {error}", field="lineage") from error
    if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.dtype != np.int64:
        raise IntegrityFailure(f"lineage index {path} is not an (n, 2) int64 array", field="lineage")
    return pairs


def records_of(pairs: np.ndarray, author_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The records of ``author_ids`` in ``pairs``: (authors, records), both int64 and aligned."""
    authors = pairs[:, 0]
    wanted = np.unique(np.asarray(author_ids, dtype=np.int64))
    starts = np.searchsorted(authors, wanted, side="left")
    ends = np.searchsorted(authors, wanted, side="right")
    if not wanted.size or not int((ends - starts).sum()):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy()
    rows = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends, strict=True) if b > a])
    return np.asarray(pairs[rows, 0], dtype=np.int64), np.asarray(pairs[rows, 1], dtype=np.int64)


def count_of(pairs: np.ndarray, author_id: int) -> int:
    """How many records of ``author_id`` the (author, record) pairs hold."""
    authors = pairs[:, 0]
    return int(np.searchsorted(authors, author_id, side="right") - np.searchsorted(authors, author_id))
