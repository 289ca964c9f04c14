"""The log of a partitioned ledger: one signed checkpoint over every partition's tree.

A ledger of ``P > 1`` partitions keeps one RFC 9162 tree per partition (``tlog_partition_tiles``). What
the operator signs is a second, ordinary log whose entries are *partition states*: each entry lists,
for every partition in order, its tree size and root, as they were when a checkpoint was signed. A new
entry is appended only when some partition grew, and only after a consistency proof shows that every
partition's tree extends the one in the previous entry. The signed checkpoints are C2SP checkpoints of
that log of states (with the extension line ``consentry.partitions P``), so witnesses cosign it and
monitors follow it exactly as they follow a single-partition ledger.

An event's inclusion proof has two steps: the event's leaf in its partition's tree (at the size the
latest state names) and that state entry in the checkpoint's tree (the last leaf). The second is the
tlog-proof's own ``index`` and hashes; the first travels in the tlog-proof's ``extra`` data:

    consentry.partition-proof/v1
    partition <p>
    index <leaf index in the partition>
    <base64 hash, one per line>
    <blank line>
    <the state entry, verbatim>

A state entry is ``consentry.partitions/v1``, ``P``, then one line ``<size> <base64 root>`` per partition.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from consentry.consent import ledger
from consentry.errors import IntegrityFailure, InvalidInput
from consentry.transparency import merkle, store
from consentry.transparency.checkpoint import decimal
from consentry.transparency.merkle import HASH_SIZE
from consentry.transparency.models import PartitionState
from consentry.transparency.note import b64, unb64

STATE_HEADER = "consentry.partitions/v1"
PROOF_HEADER = "consentry.partition-proof/v1"
EXTENSION = "consentry.partitions"


def extension(partitions: int) -> str:
    """The checkpoint extension line naming the number of partitions."""
    return f"{EXTENSION} {partitions}"


@dataclass(frozen=True)
class States:
    """Every partition's tree size and root, in partition order."""

    trees: tuple[tuple[int, bytes], ...]

    @property
    def text(self) -> str:
        """The entry's text."""
        lines = [STATE_HEADER, str(len(self.trees)), *(f"{size} {b64(root)}" for size, root in self.trees)]
        return "\n".join(lines) + "\n"

    @property
    def entry(self) -> bytes:
        """The entry's bytes (its leaf is ``leaf_hash(entry)``)."""
        return self.text.encode("utf-8")


def parse_states(entry: bytes | str) -> States:
    """A state entry; ``InvalidInput`` if malformed."""
    text = entry.decode("utf-8", "strict") if isinstance(entry, bytes) else entry
    if not text.endswith("\n"):
        raise InvalidInput("a partition state entry ends in a newline", field="entry")
    lines = text[:-1].split("\n")
    if len(lines) < 2 or lines[0] != STATE_HEADER:
        raise InvalidInput(f"a partition state entry starts with {STATE_HEADER}", field="entry")
    count = decimal(lines[1], what="entry")
    if count < 1 or len(lines) != 2 + count:
        raise InvalidInput(f"a partition state entry lists {count} partitions, one per line", field="entry")
    trees = []
    for line in lines[2:]:
        size, _, root = line.partition(" ")
        digest = unb64(root, what="entry")
        if len(digest) != HASH_SIZE:
            raise InvalidInput("a partition's root is 32 bytes", field="entry")
        trees.append((decimal(size, what="entry"), digest))
    return States(tuple(trees))


def current_states(session: Session) -> States:
    """Every partition's tree as the ledger holds it now."""
    return States(
        tuple(
            (head.size, store.root(session, head.size, partition=head.partition))
            for head in ledger.heads(session)
        )
    )


def log_size(session: Session) -> int:
    """The number of state entries (the size of the signed tree)."""
    return int(session.scalar(select(func.count()).select_from(PartitionState)) or 0)


def state_at(session: Session, index: int) -> States:
    """State entry ``index``."""
    entry = session.scalar(select(PartitionState.entry).where(PartitionState.idx == index))
    if entry is None:
        raise IntegrityFailure(f"partition state entry {index} is missing")
    return parse_states(entry)


def entries(session: Session, first: int, count: int) -> list[bytes]:
    """State entries ``[first, first + count)``."""
    rows = session.execute(
        select(PartitionState.idx, PartitionState.entry)
        .where(PartitionState.idx >= first, PartitionState.idx < first + count)
        .order_by(PartitionState.idx)
    ).all()
    if [int(r[0]) for r in rows] != list(range(first, first + count)):
        raise IntegrityFailure(f"partition state entries {first} to {first + count - 1} are not all stored")
    return [str(r[1]).encode("utf-8") for r in rows]


def record_states(session: Session) -> int:
    """Append the partitions' current state to the log of states if any partition grew (after proving
    that each one extends its tree in the previous entry); returns the log's size. The caller commits."""
    size = log_size(session)
    now = current_states(session)
    if size:
        before = state_at(session, size - 1)
        if before == now:
            return size
        if len(before.trees) != len(now.trees):
            raise IntegrityFailure("the number of partitions changed; it is fixed when the ledger is created")
        for partition, ((old, old_root), (new, new_root)) in enumerate(
            zip(before.trees, now.trees, strict=True)
        ):
            if new < old:
                raise IntegrityFailure(f"partition {partition} shrank from {old} to {new} events")
            proof = merkle.consistency_proof(old, new, store.hash_reader(session, new, partition=partition))
            merkle.verify_consistency(proof, old, old_root, new, new_root)
    elif all(tree_size == 0 for tree_size, _ in now.trees):
        return 0
    session.execute(insert(PartitionState).values(idx=size, entry=now.text))
    store.append_leaves(session, size, merkle.leaf_hash(now.entry))
    return size + 1


@dataclass(frozen=True)
class PartitionProof:
    """The first step of an event's proof: its leaf in its partition's tree, against a state entry."""

    partition: int
    index: int
    proof: tuple[bytes, ...]
    states: States

    @property
    def text(self) -> str:
        """The ``extra`` data of the tlog-proof."""
        lines = [PROOF_HEADER, f"partition {self.partition}", f"index {self.index}", *map(b64, self.proof)]
        return "\n".join(lines) + "\n\n" + self.states.text

    @property
    def extra(self) -> bytes:
        """The bytes carried as the tlog-proof's extra data."""
        return self.text.encode("utf-8")


def partition_proof(session: Session, *, seq: int, log_size: int) -> PartitionProof | None:
    """The proof of event ``seq`` in its partition's tree at the size the state entry ``log_size - 1``
    names; ``None`` if that state does not cover the event yet."""
    states = state_at(session, log_size - 1)
    count = len(states.trees)
    partition, index = ledger.partition_of_seq(seq, count), ledger.leaf_index(seq, count)
    size = states.trees[partition][0]
    if index >= size:
        return None
    reader = store.hash_reader(session, size, partition=partition)
    return PartitionProof(partition, index, tuple(merkle.inclusion_proof(size, index, reader)), states)


def parse_partition_proof(extra: bytes) -> PartitionProof:
    """The ``extra`` data of a partitioned log's tlog-proof; ``InvalidInput`` if malformed."""
    try:
        text = extra.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput("a partition proof is UTF-8 text", field="proof") from error
    head, sep, state = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or len(lines) < 3 or lines[0] != PROOF_HEADER:
        raise InvalidInput(f"a partition proof starts with {PROOF_HEADER}", field="proof")
    if not lines[1].startswith("partition ") or not lines[2].startswith("index "):
        raise InvalidInput("a partition proof names its partition and index", field="proof")
    hashes = tuple(unb64(line, what="proof") for line in lines[3:])
    if any(len(h) != HASH_SIZE for h in hashes):
        raise InvalidInput("every partition proof line is a 32-byte hash", field="proof")
    return PartitionProof(
        decimal(lines[1][10:], what="proof"), decimal(lines[2][6:], what="proof"), hashes, parse_states(state)
    )


def verify_partition_proof(proof: PartitionProof, *, seq: int, leaf: bytes) -> bytes:
    """Check that the event ``seq`` with leaf hash ``leaf`` is in its partition's tree as the state
    entry names it; returns the state entry (whose own inclusion the caller checks)."""
    count = len(proof.states.trees)
    if proof.partition != ledger.partition_of_seq(seq, count) or proof.index != ledger.leaf_index(seq, count):
        raise IntegrityFailure(
            f"the proof is for leaf {proof.index} of partition {proof.partition}, not event {seq} "
            f"(partition {ledger.partition_of_seq(seq, count)}, leaf {ledger.leaf_index(seq, count)})"
        )
    size, root = proof.states.trees[proof.partition]
    merkle.verify_inclusion(list(proof.proof), size, root, proof.index, leaf)
    return proof.states.entry
