"""C2SP tlog-tiles arithmetic: paths, widths, appends in any batch sizes, hashes read from tiles."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.errors import IntegrityFailure, InvalidInput
from consentry.transparency import merkle, tiles
from consentry.transparency.tiles import ENTRIES, Tile
from tests.transparency.test_merkle import naive_root, reader


def test_paths_follow_the_spec_examples() -> None:
    assert Tile(0, 1234067).path == "tile/0/x001/x234/067"
    assert Tile(1, 0, 17).path == "tile/1/000.p/17"
    assert Tile(ENTRIES, 273, 112).path == "tile/entries/273.p/112"
    assert Tile(2, 1000).path == "tile/2/x001/000"
    for tile in (Tile(0, 1234067), Tile(3, 5, 1), Tile(ENTRIES, 999_999_999, 255), Tile(63, 0)):
        assert tiles.parse_path(tile.path) == tile


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/1234067",
        "tile/0/x001/234/067",
        "tile/00/000",
        "tile/64/000",
        "tile/0/000.p/256",
        "tile/0/000.p/0",
        "tile/0/000.p/012",
        "tile/0/x000/001",
        "tile/data/000",
        "tile/0/000/",
        "../tile/0/000",
    ],
)
def test_malformed_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidInput):
        tiles.parse_path(path)


def test_tiles_of_a_tree_of_70000_leaves_are_those_the_spec_lists() -> None:
    size = 70_000
    assert tiles.tiles_of(size, 0) == 274 and tiles.tile_width(0, 272, size) == 256
    assert tiles.tile_width(0, 273, size) == 112
    assert tiles.tile_width(1, 0, size) == 256 and tiles.tile_width(1, 1, size) == 17
    assert tiles.tile_width(2, 0, size) == 1 and tiles.tile_width(3, 0, size) == 0
    assert tiles.frontier_tiles(size) == [Tile(0, 273, 112), Tile(1, 1, 17), Tile(2, 0, 1)]
    assert tiles.frontier_tiles(256) == [Tile(1, 0, 1)]
    with pytest.raises(InvalidInput):
        tiles.tile_at(0, 274, size)


def _grow(leaves: Sequence[bytes], batches: Sequence[int]) -> dict[tuple[int, int], bytes]:
    """Append ``leaves`` in the given batch sizes, as the store does, and return every tile."""
    stored: dict[tuple[int, int], bytes] = {}
    size = 0
    at = 0
    for count in [*batches, len(leaves)]:
        part = leaves[at : at + count]
        if not part:
            continue
        frontier = {t.level: stored[(t.level, t.index)] for t in tiles.frontier_tiles(size)}
        update = tiles.append_hashes(size, part, frontier)
        stored.update(update.tiles)
        size, at = update.size, at + len(part)
    return stored


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=70_000),
    batches=st.lists(st.integers(min_value=1, max_value=9_000), max_size=8),
    data=st.data(),
)
def test_appends_in_any_batches_give_the_tiles_of_the_definition(
    size: int, batches: list[int], data: st.DataObject
) -> None:
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    stored = _grow(leaves, batches)
    # every tile is MTH(D[(n*256 + i) * 256**l : (n*256 + i + 1) * 256**l]) for i in its width
    level = data.draw(st.integers(min_value=0, max_value=2))
    count = tiles.tiles_of(size, level)
    if count:
        index = data.draw(st.integers(min_value=0, max_value=count - 1))
        width = tiles.tile_width(level, index, size)
        span = 256**level
        want = b"".join(
            naive_root(leaves[(index * 256 + i) * span : (index * 256 + i + 1) * span]) for i in range(width)
        )
        assert stored[(level, index)] == want
    assert len(stored) == sum(tiles.tiles_of(size, lvl) for lvl in range(4))

    def read_tiles(wanted: Sequence[Tile]) -> list[bytes]:
        return [stored[(t.level, t.index)][: t.width * 32] for t in wanted]

    hashes = tiles.tile_hash_reader(size, read_tiles)
    assert merkle.tree_hash(size, hashes) == merkle.tree_hash(size, reader(leaves))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    assert merkle.inclusion_proof(size, index, hashes) == merkle.inclusion_proof(size, index, reader(leaves))
    old = data.draw(st.integers(min_value=0, max_value=size))
    assert merkle.consistency_proof(old, size, hashes) == merkle.consistency_proof(old, size, reader(leaves))


def test_an_older_tree_is_read_from_prefixes_of_todays_tiles() -> None:
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(5_000)]
    stored = _grow(leaves, [1_000])

    def read_tiles(wanted: Sequence[Tile]) -> list[bytes]:
        return [stored[(t.level, t.index)][: t.width * 32] for t in wanted]

    for size in (1, 255, 256, 257, 4_097):
        assert merkle.tree_hash(size, tiles.tile_hash_reader(size, read_tiles)) == naive_root(leaves[:size])


def test_a_stored_frontier_that_does_not_fit_the_size_is_refused() -> None:
    with pytest.raises(IntegrityFailure):
        tiles.append_hashes(3, [bytes(32)], {0: bytes(64)})
    with pytest.raises(InvalidInput):
        tiles.append_hashes(0, b"\x00" * 33, {})


def test_entry_bundles_round_trip_and_truncation_is_caught() -> None:
    entries = [b"", b"a", b"x" * 300]
    bundle = tiles.entry_bundle(entries)
    assert bundle[:2] == b"\x00\x00" and tiles.split_bundle(bundle) == entries
    with pytest.raises(IntegrityFailure):
        tiles.split_bundle(bundle[:-1])
    with pytest.raises(InvalidInput):
        tiles.entry_bundle([b"x" * 70_000])


@given(st.lists(st.binary(max_size=600), max_size=40), st.data())
@settings(max_examples=200, deadline=None)
def test_a_bundles_leaf_hashes_are_each_entrys_and_any_cut_is_caught(
    entries: list[bytes], data: st.DataObject
) -> None:
    bundle = tiles.entry_bundle(entries)
    leaves, count = tiles.bundle_leaf_hashes(bundle)
    assert count == len(entries)
    assert leaves == b"".join(merkle.leaf_hash(e) for e in entries)
    if bundle:
        cut = data.draw(st.integers(0, len(bundle) - 1))
        prefix = bundle[:cut]
        try:  # a cut on an entry's end is a shorter, valid bundle; anywhere else it is caught
            whole = tiles.split_bundle(prefix)
        except IntegrityFailure:
            with pytest.raises(IntegrityFailure):
                tiles.bundle_leaf_hashes(prefix)
        else:
            assert tiles.bundle_leaf_hashes(prefix) == (b"".join(map(merkle.leaf_hash, whole)), len(whole))


@pytest.mark.parametrize("count", [1, 2, 4, 128, 256])
def test_a_subtree_read_from_a_tile_is_the_definitions(count: int) -> None:
    hashes = [merkle.leaf_hash(b"%d" % i) for i in range(256)]
    data = b"".join(hashes)
    for start in range(0, 256, count):
        assert tiles.hash_from_tile(data, start, start + count) == merkle.perfect_root(
            hashes[start : start + count]
        )
    with pytest.raises(ValueError, match="power-of-two"):
        tiles.hash_from_tile(data, 0, 3)
