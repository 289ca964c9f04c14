"""The tree's tiles in the database: appended with the ledger, read for roots, proofs and serving.

Only tiles are stored (``tlog_tiles``): a full tile is written once, the rightmost tile of each level
is rewritten as it grows. A ledger of several partitions keeps each partition's tree in
``tlog_partition_tiles`` (``partition`` given) and, in ``tlog_tiles``, the log of partition states.
Appending ``k`` leaves reads at most one partial tile per level and writes
``k / 256`` full tiles plus the partial ones; a root or a proof reads at most a few tiles per level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Select, Table, bindparam, insert, select, tuple_, update
from sqlalchemy.orm import Session

from consentry.errors import IntegrityFailure
from consentry.transparency import merkle, tiles
from consentry.transparency.merkle import HASH_SIZE
from consentry.transparency.models import PartitionTile, TreeTile
from consentry.transparency.tiles import Tile


def _select(partition: int | None, keys: list[tuple[int, int]]) -> Select[int, int, bytes]:
    if partition is None:
        return select(TreeTile.level, TreeTile.idx, TreeTile.data).where(
            tuple_(TreeTile.level, TreeTile.idx).in_(keys)
        )
    return select(PartitionTile.level, PartitionTile.idx, PartitionTile.data).where(
        PartitionTile.partition == partition, tuple_(PartitionTile.level, PartitionTile.idx).in_(keys)
    )


def read_tiles(session: Session, wanted: Sequence[Tile], *, partition: int | None = None) -> list[bytes]:
    """The bytes of the given tiles (partial ones cut to their width) of the tree of ``partition``
    (``None``: the tree in ``tlog_tiles``); ``IntegrityFailure`` if the store lacks one or holds fewer
    hashes than asked."""
    if not wanted:
        return []
    keys = sorted({(t.level, t.index) for t in wanted})
    found: dict[tuple[int, int], bytes] = {}
    for start in range(0, len(keys), 500):
        rows = session.execute(_select(partition, keys[start : start + 500]))
        found.update({(int(level), int(idx)): bytes(data) for level, idx, data in rows})
    out = []
    for tile in wanted:
        data = found.get((tile.level, tile.index))
        if data is None or len(data) < tile.width * HASH_SIZE:
            held = 0 if data is None else len(data) // HASH_SIZE
            raise IntegrityFailure(
                f"the tree store holds {held} hashes of tile {tile.path}, not {tile.width}"
            )
        out.append(data[: tile.width * HASH_SIZE])
    return out


def hash_reader(session: Session, size: int, *, partition: int | None = None) -> merkle.HashReader:
    """Complete-subtree hashes of the tree of ``size`` leaves, read from the stored tiles."""
    return tiles.tile_hash_reader(size, lambda wanted: read_tiles(session, wanted, partition=partition))


def root(session: Session, size: int, *, partition: int | None = None) -> bytes:
    """The root of the tree of ``size`` leaves."""
    return merkle.tree_hash(size, hash_reader(session, size, partition=partition))


_TILES = cast(Table, TreeTile.__table__)  # the models' tables, for Core statements
_PARTITION_TILES = cast(Table, PartitionTile.__table__)
_GROW_TILE = (
    update(_TILES)
    .where(_TILES.c.level == bindparam("l"), _TILES.c.idx == bindparam("i"))
    .values(data=bindparam("d"))
)
_GROW_PARTITION_TILE = (
    update(_PARTITION_TILES)
    .where(
        _PARTITION_TILES.c.partition == bindparam("p"),
        _PARTITION_TILES.c.level == bindparam("l"),
        _PARTITION_TILES.c.idx == bindparam("i"),
    )
    .values(data=bindparam("d"))
)  # built once: building a statement costs more than running it


@dataclass(frozen=True)
class TileWrites:
    """What appending leaves writes to the tile store: the partial tiles that grew (rewritten in place)
    and the new tiles, each ``(level, index, bytes)``; the tree's size after it, and its partial tiles
    then, by level (what the next append starts from)."""

    size: int
    grown: list[tuple[int, int, bytes]]
    fresh: list[tuple[int, int, bytes]]
    frontier: dict[int, bytes]


def plan_append(
    session: Session,
    size: int,
    leaf_hashes: bytes | Sequence[bytes],
    *,
    partition: int | None = None,
    frontier: dict[int, bytes] | None = None,
) -> TileWrites:
    """The tile writes that append leaf hashes to the stored tree of ``size`` leaves. The partial
    tiles are read from the store unless the caller knows them (``frontier``, by level, as a previous
    plan's ``frontier`` gave them for this very tree)."""
    data = leaf_hashes if isinstance(leaf_hashes, bytes) else b"".join(leaf_hashes)
    partial = tiles.frontier_tiles(size)
    if frontier is None:
        held = read_tiles(session, partial, partition=partition)
        frontier = {t.level: d for t, d in zip(partial, held, strict=True)}
    if not data:
        return TileWrites(size, [], [], frontier)
    result = tiles.append_hashes(size, data, frontier)
    existing = {(t.level, t.index) for t in partial}
    grown: list[tuple[int, int, bytes]] = []
    fresh: list[tuple[int, int, bytes]] = []
    for (level, index), tile in sorted(result.tiles.items()):
        (grown if (level, index) in existing else fresh).append((level, index, tile))
    after = {
        t.level: result.tiles.get((t.level, t.index)) or frontier[t.level]
        for t in tiles.frontier_tiles(result.size)
    }
    return TileWrites(result.size, grown, fresh, after)


def write_tiles(session: Session, writes: TileWrites, *, partition: int | None = None) -> None:
    """Write a plan's tiles in the caller's transaction."""
    if writes.grown:  # the partial tiles that grew, in one statement sent once for them all
        session.connection().execute(
            _GROW_TILE if partition is None else _GROW_PARTITION_TILE,
            [{"p": partition, "l": level, "i": index, "d": tile} for level, index, tile in writes.grown],
        )
    fresh: list[dict[str, object]] = [
        {"level": level, "idx": index, "data": tile}
        if partition is None
        else {"partition": partition, "level": level, "idx": index, "data": tile}
        for level, index, tile in writes.fresh
    ]
    table = TreeTile if partition is None else PartitionTile
    for start in range(0, len(fresh), 2_000):
        session.execute(insert(table), fresh[start : start + 2_000])


def append_leaves(
    session: Session, size: int, leaf_hashes: bytes | Sequence[bytes], *, partition: int | None = None
) -> int:
    """Append leaf hashes to the stored tree of ``size`` leaves (in the caller's transaction);
    returns the new size."""
    if not leaf_hashes:
        return size
    writes = plan_append(session, size, leaf_hashes, partition=partition)
    write_tiles(session, writes, partition=partition)
    return writes.size
