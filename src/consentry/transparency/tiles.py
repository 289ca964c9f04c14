"""C2SP tlog-tiles: the tree stored and served as tiles of 256 hashes.

The tile at level ``L``, index ``N`` holds the hashes at tree level ``8L`` over leaves
``[N * 256**(L+1), (N + 1) * 256**(L+1))``, 32 bytes each: at level 0 the leaf hashes, above that the
roots of full tiles of the level below. A tree of size ``s`` has a partial tile of width
``floor(s / 256**L) mod 256`` at each level where that is not zero; a partial tile is a prefix of the
full tile it grows into. Paths are ``tile/<L>/<N>[.p/<W>]`` and ``tile/entries/<N>[.p/<W>]``, ``<N>`` in
zero-padded 3-digit elements, all but the last prefixed with ``x`` (``1234067`` is ``x001/x234/067``).

Any complete subtree hash ``(level, n)`` is read from one tile: the tile at level ``level // 8`` holding
its ``2**(level % 8)`` base hashes, which are hashed up inside the tile (Go's ``sumdb/tlog`` model).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from consentry.errors import IntegrityFailure, InvalidInput
from consentry.transparency.merkle import HASH_SIZE, Coord, HashReader

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
FULL_TILE_BYTES = TILE_WIDTH * HASH_SIZE
ENTRIES = -1
"""The level standing for entry bundles (``tile/entries/...``)."""
MAX_LEVEL = 63


@dataclass(frozen=True, order=True)
class Tile:
    """A tile coordinate: level (``ENTRIES`` for an entry bundle), index, width (1 to 256)."""

    level: int
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if not (ENTRIES <= self.level <= MAX_LEVEL and self.index >= 0 and 1 <= self.width <= TILE_WIDTH):
            raise InvalidInput(f"no such tile: level {self.level}, index {self.index}, width {self.width}")

    @property
    def full(self) -> bool:
        """Whether the tile holds all 256 hashes (or entries)."""
        return self.width == TILE_WIDTH

    @property
    def path(self) -> str:
        """The tlog-tiles path, without a prefix."""
        level = "entries" if self.level == ENTRIES else str(self.level)
        suffix = "" if self.full else f".p/{self.width}"
        return f"tile/{level}/{format_index(self.index)}{suffix}"

    @property
    def start(self) -> int:
        """The first leaf this tile spans."""
        return self.index << (TILE_HEIGHT * (max(self.level, 0) + 1))


def format_index(index: int) -> str:
    """``1234067`` -> ``x001/x234/067``."""
    groups = []
    while True:
        groups.append(f"{index % 1000:03d}")
        index //= 1000
        if index == 0:
            break
    groups.reverse()
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


_PATH = re.compile(r"^tile/(entries|0|[1-9][0-9]?)/((?:x[0-9]{3}/)*[0-9]{3})(?:\.p/([1-9][0-9]{0,2}))?$")


def parse_path(path: str) -> Tile:
    """The tile a tlog-tiles path names; ``InvalidInput`` for anything else."""
    match = _PATH.match(path)
    if not match:
        raise InvalidInput(f"{path!r} is not a tlog-tiles path", field="path")
    level_text, index_text, width_text = match.groups()
    level = ENTRIES if level_text == "entries" else int(level_text)
    if level > MAX_LEVEL:
        raise InvalidInput(f"tile level {level} is above {MAX_LEVEL}", field="path")
    groups = index_text.replace("x", "").split("/")
    if len(groups) > 1 and groups[0] == "000":
        raise InvalidInput(f"{path!r} has a leading zero element", field="path")
    width = int(width_text) if width_text else TILE_WIDTH
    if width_text and width >= TILE_WIDTH:
        raise InvalidInput(f"a partial tile is 1 to 255 wide, not {width}", field="path")
    return Tile(level, int("".join(groups)), width)


def tile_width(level: int, index: int, size: int) -> int:
    """How many hashes tile ``(level, index)`` holds in a tree of ``size`` leaves (0: none yet)."""
    count = size if level == ENTRIES else size >> (TILE_HEIGHT * level)
    return max(0, min(TILE_WIDTH, count - index * TILE_WIDTH))


def tiles_of(size: int, level: int) -> int:
    """How many tiles (full or partial) level ``level`` has in a tree of ``size`` leaves."""
    count = size if level == ENTRIES else size >> (TILE_HEIGHT * level)
    return -(-count // TILE_WIDTH)


def tile_at(level: int, index: int, size: int) -> Tile:
    """The tile ``(level, index)`` as it is in a tree of ``size`` leaves (partial or full)."""
    width = tile_width(level, index, size)
    if width == 0:
        raise InvalidInput(f"tile {level}/{index} does not exist in a tree of {size} leaves", field="path")
    return Tile(level, index, width)


def _locate(coord: Coord) -> tuple[int, int, int, int]:
    """Where a complete subtree's base hashes lie: tile level, tile index, first and end position."""
    level, n = coord
    tile_level, inner = divmod(level, TILE_HEIGHT)
    first = n << inner  # index of the first base hash at tree level 8 * tile_level
    return tile_level, first >> TILE_HEIGHT, first % TILE_WIDTH, first % TILE_WIDTH + (1 << inner)


def hash_from_tile(data: bytes, start: int, end: int) -> bytes:
    """The root over hashes ``[start, end)`` of a tile (a power-of-two count)."""
    if len(data) < end * HASH_SIZE:
        raise IntegrityFailure("a tile is shorter than the hashes read from it")
    count = end - start
    if count < 1 or count & (count - 1):
        raise ValueError("a tile's subtree spans a power-of-two number of hashes")
    level = data[start * HASH_SIZE : end * HASH_SIZE]
    while len(level) > HASH_SIZE:
        level = parents(level)
    return level


def parents(level: bytes) -> bytes:
    """The node hashes over consecutive pairs of concatenated 32-byte hashes (an even count): one
    level up, as one bytes object (a slice and a hash per node, nothing else per node)."""
    sha256 = hashlib.sha256
    step = 2 * HASH_SIZE
    return b"".join([sha256(b"\x01" + level[i : i + step]).digest() for i in range(0, len(level), step)])


TileReader = Callable[[Sequence[Tile]], list[bytes]]
"""Returns the bytes of the given tiles, in order (partial tiles at exactly their width)."""


def tile_hash_reader(size: int, read_tiles: TileReader) -> HashReader:
    """A ``HashReader`` for the tree of ``size`` leaves that reads each needed tile once."""

    def read(coords: Sequence[Coord]) -> list[bytes]:
        located = [_locate(c) for c in coords]
        wanted = sorted({(lvl, idx) for lvl, idx, _, _ in located})
        tiles = [tile_at(lvl, idx, size) for lvl, idx in wanted]
        datas = read_tiles(tiles)
        if len(datas) != len(tiles):
            raise IntegrityFailure(f"{len(datas)} tiles returned for {len(tiles)} asked")
        by_tile = {}
        for tile, data in zip(tiles, datas, strict=True):
            if len(data) != tile.width * HASH_SIZE:
                raise IntegrityFailure(f"tile {tile.path} is {len(data)} bytes, not {tile.width * HASH_SIZE}")
            by_tile[(tile.level, tile.index)] = data
        return [hash_from_tile(by_tile[(lvl, idx)], start, end) for lvl, idx, start, end in located]

    return read


@dataclass
class TileUpdate:
    """The tiles an append changed: each ``(level, index)`` with its new bytes (partial or full)."""

    tiles: dict[tuple[int, int], bytes]
    size: int


def append_hashes(size: int, leaf_hashes: Sequence[bytes] | bytes, frontier: dict[int, bytes]) -> TileUpdate:
    """Append leaf hashes to a tree of ``size`` leaves.

    ``frontier`` maps each level to the bytes of its current partial tile (levels without one are
    absent), as read from the store; the result holds every tile that changed, full or partial.
    ``leaf_hashes`` may be one bytes object of concatenated 32-byte hashes.
    """
    data = leaf_hashes if isinstance(leaf_hashes, bytes) else b"".join(leaf_hashes)
    if len(data) % HASH_SIZE:
        raise InvalidInput("leaf hashes must be 32 bytes each")
    changed: dict[tuple[int, int], bytes] = {}
    level = 0
    pending = data
    while pending:
        count = size >> (TILE_HEIGHT * level)  # hashes at this level before the append
        have = count % TILE_WIDTH
        current = frontier.get(level, b"") if have else b""
        if len(current) != have * HASH_SIZE:
            raise IntegrityFailure(
                f"the stored partial tile at level {level} holds {len(current) // HASH_SIZE} hashes, "
                f"the tree needs {have}"
            )
        index = count // TILE_WIDTH
        buffer = current + pending
        promoted: list[bytes] = []
        offset = 0
        while len(buffer) - offset >= FULL_TILE_BYTES:
            tile = buffer[offset : offset + FULL_TILE_BYTES]
            changed[(level, index)] = tile
            promoted.append(hash_from_tile(tile, 0, TILE_WIDTH))
            index += 1
            offset += FULL_TILE_BYTES
        if offset < len(buffer):
            changed[(level, index)] = buffer[offset:]
        pending = b"".join(promoted)
        level += 1
    return TileUpdate(changed, size + len(data) // HASH_SIZE)


def frontier_tiles(size: int) -> list[Tile]:
    """The partial tiles of a tree of ``size`` leaves, one per level that has one."""
    tiles = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        count = size >> (TILE_HEIGHT * level)
        if count % TILE_WIDTH:
            tiles.append(Tile(level, count // TILE_WIDTH, count % TILE_WIDTH))
        level += 1
    return tiles


def entry_bundle(entries: Iterable[bytes]) -> bytes:
    """An entry bundle: each entry as a big-endian uint16 length, then its bytes."""
    parts = []
    for entry in entries:
        if len(entry) > 0xFFFF:
            raise InvalidInput("a log entry is longer than 65,535 bytes")
        parts.append(len(entry).to_bytes(2, "big"))
        parts.append(entry)
    return b"".join(parts)


def bundle_leaf_hashes(data: bytes) -> tuple[bytes, int]:
    """The RFC 9162 leaf hashes of an entry bundle's entries, concatenated, and how many there are;
    ``IntegrityFailure`` if the bundle is truncated.

    One pass, with no list of entries in between: per entry a length read, one slice, one
    ``SHA-256(0x00 || entry)``. (Hashing views of a private copy, with the byte before each entry set to
    0x00, avoids the slice but measures slower: a memoryview costs more than copying 100 bytes.)
    """
    sha256 = hashlib.sha256
    out: list[bytes] = []
    append = out.append
    at, end = 0, len(data)
    while at < end:
        if at + 2 > end:
            raise IntegrityFailure(f"the entry bundle ends inside the length of entry {len(out)}")
        stop = at + 2 + ((data[at] << 8) | data[at + 1])
        if stop > end:
            raise IntegrityFailure(f"the entry bundle ends inside entry {len(out)}")
        append(sha256(b"\x00" + data[at + 2 : stop]).digest())
        at = stop
    return b"".join(out), len(out)


def split_bundle(data: bytes) -> list[bytes]:
    """The entries of an entry bundle; ``IntegrityFailure`` if it is truncated."""
    entries = []
    at = 0
    while at < len(data):
        if at + 2 > len(data):
            raise IntegrityFailure("an entry bundle ends inside a length prefix")
        length = int.from_bytes(data[at : at + 2], "big")
        at += 2
        if at + length > len(data):
            raise IntegrityFailure("an entry bundle ends inside an entry")
        entries.append(data[at : at + length])
        at += length
    return entries
