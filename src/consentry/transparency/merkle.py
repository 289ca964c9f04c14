"""RFC 9162 Merkle tree hashing, proofs and their verification.

``leaf = SHA-256(0x00 || entry)``, ``node = SHA-256(0x01 || left || right)``; the tree of ``n`` leaves
splits at the largest power of two smaller than ``n`` (RFC 9162, section 2.1.1). The empty tree's hash
is ``SHA-256()`` of nothing.

A hash of the tree is named by its coordinates ``(level, n)``: the root of the complete subtree over
leaves ``[n * 2**level, (n + 1) * 2**level)``. Proofs are built from such complete subtrees only, which a
``HashReader`` supplies (from tiles, see ``tiles.py``), so computing a root or a proof reads O(log n)
hashes. Generation follows the recursive definitions of RFC 9162 sections 2.1.3.1 and 2.1.4.1 (the
structure of Go's ``sumdb/tlog``); verification is the iterative algorithm of sections 2.1.3.2 and
2.1.4.2, a second, independent formulation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from consentry.errors import IntegrityFailure, InvalidInput

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The hash of the empty tree (RFC 9162, section 2.1.1)."""

Coord = tuple[int, int]
"""``(level, n)``: the complete subtree over leaves ``[n * 2**level, (n + 1) * 2**level)``."""
HashReader = Callable[[Sequence[Coord]], list[bytes]]
"""Returns the hashes of the given complete subtrees, in order."""


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 || entry)``."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def perfect_root(hashes: Sequence[bytes]) -> bytes:
    """The root over a power-of-two number of hashes (a complete subtree)."""
    level = list(hashes)
    if not level or len(level) & (len(level) - 1):
        raise ValueError("perfect_root needs a power-of-two number of hashes")
    sha256 = hashlib.sha256
    while len(level) > 1:
        level = [sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]
    return level[0]


def _split(size: int) -> int:
    """The largest power of two smaller than ``size`` (``size >= 2``)."""
    return 1 << ((size - 1).bit_length() - 1)


def subtree_coords(lo: int, hi: int) -> list[Coord]:
    """The complete subtrees, left to right, whose roots hash into the root over ``[lo, hi)``.

    ``lo`` must be a multiple of the first subtree's width, as it is for every range a proof needs.
    """
    coords: list[Coord] = []
    while lo < hi:
        width = 1 << ((hi - lo).bit_length() - 1)  # the largest power of two <= hi - lo
        level = width.bit_length() - 1
        if lo & (width - 1):
            raise ValueError(f"[{lo}, {hi}) does not start on a subtree boundary")
        coords.append((level, lo >> level))
        lo += width
    return coords


def _fold(hashes: Sequence[bytes]) -> bytes:
    """The root over consecutive complete subtrees of decreasing width (right to left folding)."""
    root = hashes[-1]
    for left in reversed(hashes[:-1]):
        root = node_hash(left, root)
    return root


class _Plan:
    """Which complete subtrees a computation reads, then the computation over what was read."""

    def __init__(self) -> None:
        self.coords: list[Coord] = []

    def want(self, lo: int, hi: int) -> int:
        """Note the subtrees of ``[lo, hi)``; returns how many there are."""
        coords = subtree_coords(lo, hi)
        self.coords.extend(coords)
        return len(coords)


def tree_hash(size: int, read: HashReader) -> bytes:
    """The root of the tree of ``size`` leaves (at most ``log2(size) + 1`` hashes read)."""
    if size < 0:
        raise InvalidInput("a tree size cannot be negative", field="size")
    if size == 0:
        return EMPTY_ROOT
    coords = subtree_coords(0, size)
    return _fold(_read(read, coords))


def _read(read: HashReader, coords: Sequence[Coord]) -> list[bytes]:
    hashes = read(coords) if coords else []
    if len(hashes) != len(coords) or any(len(h) != HASH_SIZE for h in hashes):
        raise IntegrityFailure(f"the hash store returned {len(hashes)} hashes for {len(coords)} asked")
    return hashes


def _inclusion_ranges(lo: int, hi: int, index: int, out: list[tuple[int, int]]) -> None:
    """The ranges whose roots form the audit path of ``index`` in ``[lo, hi)``, leaf end first."""
    if hi - lo == 1:
        return
    k = _split(hi - lo)
    if index < lo + k:
        _inclusion_ranges(lo, lo + k, index, out)
        out.append((lo + k, hi))
    else:
        _inclusion_ranges(lo + k, hi, index, out)
        out.append((lo, lo + k))


def inclusion_proof(size: int, index: int, read: HashReader) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``size`` leaves (RFC 9162, 2.1.3.1)."""
    if not 0 <= index < size:
        raise InvalidInput(f"leaf {index} is not in a tree of {size} leaves", field="index")
    ranges: list[tuple[int, int]] = []
    _inclusion_ranges(0, size, index, ranges)
    return _roots_of(ranges, read)


def _roots_of(ranges: Sequence[tuple[int, int]], read: HashReader) -> list[bytes]:
    plan = _Plan()
    counts = [plan.want(lo, hi) for lo, hi in ranges]
    hashes = _read(read, plan.coords)
    out: list[bytes] = []
    at = 0
    for count in counts:
        out.append(_fold(hashes[at : at + count]))
        at += count
    return out


def _consistency_ranges(lo: int, hi: int, old: int, whole: bool, out: list[tuple[int, int]]) -> None:
    """RFC 9162 ``SUBPROOF(m, D[lo:hi], b)``: the ranges whose roots form the proof."""
    if old == hi:
        if not whole:
            out.append((lo, hi))
        return
    k = _split(hi - lo)
    if old <= lo + k:
        _consistency_ranges(lo, lo + k, old, whole, out)
        out.append((lo + k, hi))
    else:
        _consistency_ranges(lo + k, hi, old, False, out)
        out.append((lo, lo + k))


def consistency_proof(old_size: int, new_size: int, read: HashReader) -> list[bytes]:
    """The proof that the tree of ``new_size`` leaves extends the one of ``old_size`` (RFC 9162,
    2.1.4.1); empty when ``old_size`` is 0 or equals ``new_size``."""
    if not 0 <= old_size <= new_size:
        raise InvalidInput(f"no consistency proof from size {old_size} to size {new_size}", field="from")
    if old_size in (0, new_size):
        return []
    ranges: list[tuple[int, int]] = []
    _consistency_ranges(0, new_size, old_size, True, ranges)
    return _roots_of(ranges, read)


def root_from_inclusion(proof: Sequence[bytes], size: int, index: int, leaf: bytes) -> bytes:
    """The root implied by an audit path (RFC 9162, 2.1.3.2); raises ``IntegrityFailure`` if the
    path has the wrong length for ``(index, size)``."""
    if not 0 <= index < size:
        raise IntegrityFailure(f"leaf {index} is not in a tree of {size} leaves")
    fn, sn = index, size - 1
    root = leaf
    for sibling in proof:
        if len(sibling) != HASH_SIZE or sn == 0:
            raise IntegrityFailure("the inclusion proof is malformed")
        if fn & 1 or fn == sn:
            root = node_hash(sibling, root)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            root = node_hash(root, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise IntegrityFailure("the inclusion proof is too short")
    return root


def verify_inclusion(proof: Sequence[bytes], size: int, root: bytes, index: int, leaf: bytes) -> None:
    """Check that ``leaf`` is leaf ``index`` of the tree of ``size`` leaves with ``root``."""
    if root_from_inclusion(proof, size, index, leaf) != root:
        raise IntegrityFailure(f"leaf {index} is not included in the tree of size {size} with this root")


def verify_consistency(
    proof: Sequence[bytes], old_size: int, old_root: bytes, new_size: int, new_root: bytes
) -> None:
    """Check that the tree ``(new_size, new_root)`` extends ``(old_size, old_root)`` (RFC 9162,
    2.1.4.2); raises ``IntegrityFailure`` naming the problem otherwise."""
    if old_size > new_size:
        raise IntegrityFailure(f"the tree shrank from size {old_size} to {new_size} (rollback)")
    if old_size == 0:
        if proof:
            raise IntegrityFailure("a consistency proof from the empty tree must be empty")
        return
    if old_size == new_size:
        if proof:
            raise IntegrityFailure("a consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise IntegrityFailure(f"two different roots for the same size {new_size} (fork)")
        return
    path = list(proof)
    if any(len(h) != HASH_SIZE for h in path) or not path:
        raise IntegrityFailure("the consistency proof is malformed")
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise IntegrityFailure("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise IntegrityFailure("the consistency proof is too short")
    if fr != old_root:
        raise IntegrityFailure(f"the tree of size {new_size} does not contain the tree of size {old_size}")
    if sr != new_root:
        raise IntegrityFailure(f"the consistency proof does not lead to the root of size {new_size}")
