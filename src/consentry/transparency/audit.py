"""The operator's own audit of the log against the ledger: the chain, the tree and the latest checkpoint.

``consentry ledger verify`` runs it. The chain is recomputed event by event; each event's leaf hash is
appended to a tree rebuilt in memory (only the growing tiles are kept), every tile the rebuild
completes is compared with the stored one, and the stored root is compared with the recomputed one.
The latest checkpoint's signature is checked with the log's verifier key, and its root against the
root the events give at its size. This catches a store that drifted from the events and edits made
after a checkpoint was signed; a rewrite of chain, tree and checkpoints together needs checkpoints
kept outside (monitors, witnesses, releases) to be caught.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from consentry.consent import ledger
from consentry.errors import IntegrityFailure, InvalidInput
from consentry.transparency import merkle, partitions, store, tiles
from consentry.transparency.checkpoint import Checkpoint as CheckpointBody
from consentry.transparency.merkle import HASH_SIZE
from consentry.transparency.models import Checkpoint, TreeTile
from consentry.transparency.note import Verifier
from consentry.transparency.tiles import FULL_TILE_BYTES, TILE_HEIGHT, TILE_WIDTH
from consentry.transparency.verify import Trust, verify_checkpoint

_CHUNK = 64 * TILE_WIDTH
"""Leaves hashed into the rebuilt tree at a time (and full tiles compared in one query)."""


@dataclass
class AuditReport:
    """The outcome of an audit: the chain's report, then the tree's and the checkpoint's findings."""

    chain: ledger.VerifyReport
    ok: bool
    first_bad_seq: int | None = None
    problem: str | None = None
    root: str | None = None
    checkpoint_size: int | None = None
    notes: list[str] = field(default_factory=list)


class _Rebuild:
    """The tree rebuilt from the events, compared with the stored tiles as it grows."""

    def __init__(self, session: Session, checkpoint_size: int | None) -> None:
        self.session = session
        self.size = 0
        self.frontier: dict[int, bytes] = {}
        self.pending: list[bytes] = []
        self.checkpoint_size = checkpoint_size
        self.checkpoint_root: bytes | None = merkle.EMPTY_ROOT if checkpoint_size == 0 else None
        self.mismatch: tuple[int | None, str] | None = None

    def add(self, seq: int, entry: bytes) -> None:
        self.pending.append(merkle.leaf_hash(entry))
        if self.size + len(self.pending) == self.checkpoint_size or len(self.pending) >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self.pending or self.mismatch is not None:
            self.pending.clear()
            return
        update = tiles.append_hashes(self.size, b"".join(self.pending), self.frontier)
        self.pending.clear()
        self.size = update.size
        full = {key: data for key, data in update.tiles.items() if len(data) == FULL_TILE_BYTES}
        self._compare(full)
        self.frontier = {
            t.level: update.tiles.get((t.level, t.index), self.frontier.get(t.level, b""))
            for t in tiles.frontier_tiles(self.size)
        }
        if self.size == self.checkpoint_size:
            self.checkpoint_root = self.root()

    def _compare(self, expected: dict[tuple[int, int], bytes]) -> None:
        keys = sorted(expected)
        stored: dict[tuple[int, int], bytes] = {}
        for start in range(0, len(keys), 500):
            rows = self.session.execute(
                select(TreeTile.level, TreeTile.idx, TreeTile.data).where(
                    tuple_(TreeTile.level, TreeTile.idx).in_(keys[start : start + 500])
                )
            )
            stored.update({(int(level), int(idx)): bytes(data) for level, idx, data in rows})
        for level, index in keys:
            want, have = expected[(level, index)], stored.get((level, index), b"")
            if have[: len(want)] == want:
                continue
            at = next(
                (i for i in range(len(want) // HASH_SIZE) if have[i * HASH_SIZE : (i + 1) * HASH_SIZE]
                 != want[i * HASH_SIZE : (i + 1) * HASH_SIZE]),
                0,
            )  # fmt: skip
            first_leaf = (index * TILE_WIDTH + at) << (TILE_HEIGHT * level)
            path = tiles.Tile(level, index, len(want) // HASH_SIZE).path
            what = "lacks" if len(have) <= at * HASH_SIZE else "holds a different hash for"
            span = "event" if level == 0 else "the subtree starting at event"
            self.mismatch = (
                first_leaf + 1,
                f"the stored tree tile {path} {what} {span} {first_leaf + 1}: "
                "the tree does not match the events",
            )
            return

    def compare_partial(self) -> None:
        """Compare the rightmost (partial) tiles, and that the store holds no leaf past the events."""
        self._compare({(t.level, t.index): self.frontier[t.level] for t in tiles.frontier_tiles(self.size)})
        last = self.session.execute(
            select(TreeTile.idx, TreeTile.data)
            .where(TreeTile.level == 0)
            .order_by(TreeTile.idx.desc())
            .limit(1)
        ).first()
        leaves = 0 if last is None else int(last[0]) * TILE_WIDTH + len(last[1]) // HASH_SIZE
        if self.mismatch is None and leaves > self.size:
            self.mismatch = (
                None,
                f"the stored tree holds {leaves} leaves but the ledger holds {self.size} events",
            )

    def root(self) -> bytes:
        """The root of the tree rebuilt so far."""
        partial = {(t.level, t.index): self.frontier[t.level] for t in tiles.frontier_tiles(self.size)}
        reader = tiles.tile_hash_reader(
            self.size, lambda wanted: [partial[(t.level, t.index)] for t in wanted]
        )
        return merkle.tree_hash(self.size, reader)


def audit(session: Session, *, log_key: Verifier | None, batch: int = 5_000) -> AuditReport:
    """Verify the chain, the tree against the events and the latest checkpoint (signature with
    ``log_key``, root against the events). ``log_key`` ``None`` with a checkpoint present is a problem:
    the audit fails closed."""
    latest = session.scalars(select(Checkpoint).order_by(Checkpoint.size.desc()).limit(1)).first()
    if ledger.partition_count(session) > 1:
        return _audit_partitions(session, latest=latest, log_key=log_key, batch=batch)
    rebuild = _Rebuild(session, latest.size if latest is not None else None)
    chain = ledger.verify(session, batch=batch, on_entry=rebuild.add)
    if not chain.ok:
        return AuditReport(chain, False, chain.first_bad_seq, chain.problem)
    rebuild.flush()
    if rebuild.mismatch is None:  # the growing tiles too
        rebuild.compare_partial()
    if rebuild.mismatch is not None:
        return AuditReport(chain, False, *rebuild.mismatch)
    root = rebuild.root()
    report = AuditReport(chain, True, root=root.hex())
    try:
        stored = store.root(session, chain.head_seq)
    except IntegrityFailure as error:
        return _fail(
            report, None, f"the stored tree cannot give the root of {chain.head_seq} leaves: {error}"
        )
    if stored != root:
        return _fail(
            report, None, f"the stored tree's root at size {chain.head_seq} is not the root of the events"
        )
    report.notes.append(f"tree of {chain.head_seq} leaves matches the events, root {root.hex()}")
    if latest is None:
        report.notes.append("no checkpoint signed yet")
        return report
    body = _signed_latest(report, latest, log_key)
    if body is None:
        return report
    if body.size > chain.head_seq:
        return _fail(
            report,
            None,
            f"the latest checkpoint covers {body.size} events but the ledger holds {chain.head_seq}: "
            "events were removed after it was signed",
        )
    if rebuild.checkpoint_root != body.root:
        return _fail(
            report,
            None,
            f"events 1 to {body.size} do not hash to the root of the latest checkpoint (size {body.size}): "
            "they were changed after it was signed",
        )
    report.notes.append(f"latest checkpoint (size {body.size}) is signed by the log and matches the events")
    return report


def _signed_latest(
    report: AuditReport, latest: Checkpoint, log_key: Verifier | None
) -> CheckpointBody | None:
    """The body of the latest checkpoint once its signature by the log and its stored size and root
    check out; otherwise ``None``, with ``report`` failed naming why."""
    report.checkpoint_size = latest.size
    if log_key is None:
        _fail(report, None, "the log's verifier key is unknown: the latest checkpoint cannot be checked")
        return None
    try:
        body = verify_checkpoint(latest.note + latest.cosignatures, Trust(log_key)).checkpoint
    except (IntegrityFailure, InvalidInput) as error:
        _fail(report, None, f"the latest checkpoint (size {latest.size}) does not verify: {error}")
        return None
    if body.size != latest.size or body.root.hex() != latest.root:
        _fail(report, None, f"the checkpoint stored as size {latest.size} signs a different tree")
        return None
    return body


def _fail(report: AuditReport, seq: int | None, problem: str) -> AuditReport:
    report.ok = False
    report.first_bad_seq = seq
    report.problem = problem
    return report


def _root_of(leaves: bytes, size: int) -> bytes:
    """The RFC 9162 root of the first ``size`` leaf hashes (concatenated) of ``leaves``."""
    built = tiles.append_hashes(0, leaves[: size * HASH_SIZE], {}).tiles
    return merkle.tree_hash(
        size,
        tiles.tile_hash_reader(
            size, lambda wanted: [built[(t.level, t.index)][: t.width * HASH_SIZE] for t in wanted]
        ),
    )


def _audit_partitions(
    session: Session, *, latest: Checkpoint | None, log_key: Verifier | None, batch: int
) -> AuditReport:
    """The audit of a partitioned ledger: every partition's chain, its tree against its events, and the
    latest checkpoint against the log of partition states and the partitions' events."""
    count = ledger.partition_count(session)
    leaves = [bytearray() for _ in range(count)]

    def add(seq: int, entry: bytes) -> None:
        leaves[ledger.partition_of_seq(seq, count)] += merkle.leaf_hash(entry)

    chain = ledger.verify(session, batch=batch, on_entry=add)
    if not chain.ok:
        return AuditReport(chain, False, chain.first_bad_seq, chain.problem)
    report = AuditReport(chain, True)
    for partition, data in enumerate(leaves):
        size = len(data) // HASH_SIZE
        try:
            stored = store.root(session, size, partition=partition)
        except IntegrityFailure as error:
            return _fail(report, None, f"partition {partition}'s stored tree lacks tiles: {error}")
        if stored != _root_of(bytes(data), size):
            return _fail(
                report, None, f"partition {partition}'s stored tree is not the tree of its {size} events"
            )
    report.notes.append(f"the trees of all {count} partitions match their events")
    if latest is None:
        report.notes.append("no checkpoint signed yet")
        return report
    body = _signed_latest(report, latest, log_key)
    if body is None:
        return report
    try:
        entries = partitions.entries(session, 0, body.size)
    except IntegrityFailure as error:
        return _fail(report, None, f"the log of partition states is incomplete: {error}")
    states = b"".join(merkle.leaf_hash(e) for e in entries)
    if _root_of(states, body.size) != body.root:
        return _fail(
            report,
            None,
            f"the partition states do not hash to the latest checkpoint's root (size {body.size})",
        )
    if body.size:
        last = partitions.parse_states(entries[-1])
        for partition, (size, root) in enumerate(last.trees):
            held = len(leaves[partition]) // HASH_SIZE
            if size > held:
                return _fail(
                    report,
                    None,
                    f"the latest checkpoint covers {size} events of partition {partition} but it holds "
                    f"{held}: events were removed after it was signed",
                )
            if _root_of(bytes(leaves[partition]), size) != root:
                return _fail(
                    report,
                    None,
                    f"partition {partition}'s first {size} events do not hash to the root the latest "
                    "checkpoint commits to: they were changed after it was signed",
                )
    report.notes.append(
        f"latest checkpoint (size {body.size}) is signed by the log and matches every partition"
    )
    return report
