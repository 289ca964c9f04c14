"""Lineage: Roaring bitmaps (pyroaring ``BitMap64``, portable serialisation) of what a release holds.

``lineage/records-<category>.roaring`` holds the record ids a release delivers, ``authors-<category>
.roaring`` the account ids of their authors, and for incremental releases ``removed-<category>.roaring``
the ids it withdraws. Later opt-outs and deletions find every release holding a record by loading these
files, which takes milliseconds.
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
