"""RFC 9162 hashing and proofs, checked against published vectors, a real Certificate Transparency log
and an independent implementation (pymerkle)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymerkle import InmemoryTree

from consentry.errors import IntegrityFailure, InvalidInput
from consentry.transparency import merkle

DATA = Path(__file__).parent / "data"

# The reference leaves and tree heads of RFC 6962 implementations (transparency-dev/merkle's
# testonly constants, the same ones Certificate Transparency's C++ tests used); data only.
REFERENCE_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
REFERENCE_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
REFERENCE_INCLUSION = {
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}
REFERENCE_CONSISTENCY = {
    (2, 8): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}


def reader(leaves: Sequence[bytes]) -> merkle.HashReader:
    """A hash reader over an in-memory list of leaf hashes (the naive reference)."""

    def read(coords: Sequence[merkle.Coord]) -> list[bytes]:
        return [merkle.perfect_root(leaves[n << level : (n + 1) << level]) for level, n in coords]

    return read


def naive_root(leaves: Sequence[bytes]) -> bytes:
    """MTH written straight from RFC 9162, section 2.1.1."""
    if not leaves:
        return merkle.EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return merkle.node_hash(naive_root(leaves[:k]), naive_root(leaves[k:]))


LEAVES = [merkle.leaf_hash(e) for e in REFERENCE_LEAVES]


def test_roots_match_the_reference_tree_heads() -> None:
    read = reader(LEAVES)
    for size, want in enumerate(REFERENCE_ROOTS):
        assert merkle.tree_hash(size, read).hex() == want


@pytest.mark.parametrize(("index", "size"), sorted(REFERENCE_INCLUSION))
def test_inclusion_proofs_match_the_reference(index: int, size: int) -> None:
    proof = merkle.inclusion_proof(size, index, reader(LEAVES))
    assert [h.hex() for h in proof] == REFERENCE_INCLUSION[(index, size)]
    merkle.verify_inclusion(proof, size, bytes.fromhex(REFERENCE_ROOTS[size]), index, LEAVES[index])


@pytest.mark.parametrize(("old", "new"), sorted(REFERENCE_CONSISTENCY))
def test_consistency_proofs_match_the_reference(old: int, new: int) -> None:
    proof = merkle.consistency_proof(old, new, reader(LEAVES))
    assert [h.hex() for h in proof] == REFERENCE_CONSISTENCY[(old, new)]
    merkle.verify_consistency(
        proof, old, bytes.fromhex(REFERENCE_ROOTS[old]), new, bytes.fromhex(REFERENCE_ROOTS[new])
    )


def _b64(items: list[str]) -> list[bytes]:
    return [base64.b64decode(item) for item in items]


def test_a_real_certificate_transparency_log_proves_inclusion_and_consistency() -> None:
    """Proofs served by Google's Argon 2020 log: another implementation, at a billion leaves."""
    sth = json.loads((DATA / "argon2020" / "sth.json").read_text())
    size, root = sth["tree_size"], base64.b64decode(sth["sha256_root_hash"])
    entry = base64.b64decode(
        json.loads((DATA / "argon2020" / "entries.json").read_text())["entries"][0]["leaf_input"]
    )
    audit = _b64(json.loads((DATA / "argon2020" / "proof.json").read_text())["audit_path"])
    merkle.verify_inclusion(audit, size, root, 10_000, merkle.leaf_hash(entry))
    with pytest.raises(IntegrityFailure):
        merkle.verify_inclusion(audit, size, root, 10_001, merkle.leaf_hash(entry))
    with pytest.raises(IntegrityFailure):
        merkle.verify_inclusion(audit, size, root, 10_000, merkle.leaf_hash(entry + b"\x00"))

    consistency = _b64(json.loads((DATA / "argon2020" / "consistency.json").read_text())["consistency"])
    old_root = base64.b64decode("AuIZ5V6sDUj1vn3Y1K85oOaQ7y+FJJKtyRTl1edIKBQ=")
    merkle.verify_consistency(consistency, 3_654_490, old_root, size, root)
    with pytest.raises(IntegrityFailure):
        merkle.verify_consistency(consistency, 3_654_491, old_root, size, root)
    with pytest.raises(IntegrityFailure):
        merkle.verify_consistency(consistency, 3_654_490, old_root, size, bytes(32))


@settings(max_examples=60, deadline=None)
@given(size=st.integers(min_value=1, max_value=140), data=st.data())
def test_roots_and_inclusion_proofs_agree_with_pymerkle(size: int, data: st.DataObject) -> None:
    entries = [f"entry {i}".encode() for i in range(size)]
    leaves = [merkle.leaf_hash(e) for e in entries]
    tree = InmemoryTree(algorithm="sha256")
    for entry in entries:
        tree.append_entry(entry)
    read = reader(leaves)
    root = merkle.tree_hash(size, read)
    assert root == tree.get_root(size) == naive_root(leaves)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    ours = merkle.inclusion_proof(size, index, read)
    theirs = tree.prove_inclusion(index + 1, size)  # pymerkle counts leaves from one
    assert theirs.path[0] == leaves[index] and theirs.path[1:] == ours
    merkle.verify_inclusion(ours, size, root, index, leaves[index])


@settings(max_examples=80, deadline=None)
@given(new=st.integers(min_value=1, max_value=140), data=st.data())
def test_every_consistency_proof_verifies_and_every_mangled_one_fails(new: int, data: st.DataObject) -> None:
    old = data.draw(st.integers(min_value=0, max_value=new))
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(new)]
    read = reader(leaves)
    old_root, new_root = naive_root(leaves[:old]), naive_root(leaves)
    proof = merkle.consistency_proof(old, new, read)
    merkle.verify_consistency(proof, old, old_root, new, new_root)
    if proof:
        at = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        flipped = list(proof)
        flipped[at] = bytes([flipped[at][0] ^ 1]) + flipped[at][1:]
        with pytest.raises(IntegrityFailure):
            merkle.verify_consistency(flipped, old, old_root, new, new_root)
        with pytest.raises(IntegrityFailure):
            merkle.verify_consistency(proof[:-1], old, old_root, new, new_root)
    with pytest.raises(IntegrityFailure):
        merkle.verify_consistency([*proof, bytes(32)], old, old_root, new, new_root)
    if 0 < old < new:
        other = naive_root([*leaves[: old - 1], merkle.leaf_hash(b"rewritten")])
        with pytest.raises(IntegrityFailure):
            merkle.verify_consistency(proof, old, other, new, new_root)


def test_degenerate_consistency_cases() -> None:
    read = reader(LEAVES)
    root4, root8 = merkle.tree_hash(4, read), merkle.tree_hash(8, read)
    merkle.verify_consistency([], 4, root4, 4, root4)
    merkle.verify_consistency([], 0, merkle.EMPTY_ROOT, 8, root8)
    with pytest.raises(IntegrityFailure, match="fork"):
        merkle.verify_consistency([], 4, root4, 4, root8)
    with pytest.raises(IntegrityFailure, match="rollback"):
        merkle.verify_consistency([], 8, root8, 4, root4)
    with pytest.raises(IntegrityFailure):
        merkle.verify_consistency([], 6, merkle.tree_hash(6, read), 8, root8)
    with pytest.raises(InvalidInput):
        merkle.consistency_proof(5, 3, read)
    with pytest.raises(InvalidInput):
        merkle.inclusion_proof(8, 8, read)
    with pytest.raises(IntegrityFailure):
        merkle.verify_inclusion([], 8, root8, 9, LEAVES[0])


def test_a_root_reads_only_log_n_hashes() -> None:
    asked: list[merkle.Coord] = []

    def read(coords: Sequence[merkle.Coord]) -> list[bytes]:
        asked.extend(coords)
        return [bytes(32)] * len(coords)

    merkle.tree_hash(10_000_000, read)
    assert len(asked) == bin(10_000_000).count("1")
    asked.clear()
    merkle.inclusion_proof(10_000_000, 1_234_567, read)
    assert len(asked) <= 2 * 24
    asked.clear()
    merkle.consistency_proof(7_654_321, 10_000_000, read)
    assert len(asked) <= 2 * 24
