"""What a build reads from the database: the ledger head and, bounded by it, the consent events and
subject mappings, with the policy versions, all in one snapshot.

A release's manifest names the ledger position its build read: the latest signed checkpoint of the
transparency log (the build signs one first), and the head of that size. Every event the build considers has
``seq <= head`` as well as ``recorded_at <= as_of``, and the head, the events, the subject mappings
and the policies are read in one transaction at snapshot isolation (a read transaction of SQLite in
WAL mode is one; on PostgreSQL it runs at ``REPEATABLE READ``). So a write that commits while the
build reads (a bulk import with historic times, a live change, an account deleted with its mapping)
is either wholly before the head the manifest names or has no effect on the release.

The same snapshot reads every account the database no longer holds as active. A lake is an export and
may be older than the database: an account deleted since then is still active there, while its subject
mapping, and with it every choice it made, is already gone. The build overlays these statuses on the
lake's (``datasets.eligibility.with_database_status``), so such an account is excluded instead of
falling back to a default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.consent import ledger, reader
from consentry.consent.ledger import GENESIS
from consentry.consent.models import ConsentEvent, LedgerHead
from consentry.consent.policy import Policy
from consentry.consent.service import load_policies
from consentry.db import Database
from consentry.errors import IntegrityFailure
from consentry.transparency import partitions
from consentry.transparency import service as tlog
from consentry.transparency.cite import citation

CLOSED_ACCOUNTS = reader.CLOSED_ACCOUNTS
"""Accounts the database holds as deactivated or deleted (``consent.reader.closed_accounts``)."""


@dataclass(frozen=True)
class ConsentSnapshot:
    """The consent inputs of a build, read in one snapshot."""

    head_seq: int
    head_hash: str
    checkpoint: dict[str, Any] | None
    """The citation of the checkpoint whose size is ``head_seq`` (``cite.citation``), if bounded by one."""
    policies: tuple[Policy, ...]
    events: pa.Table
    """The events of the settings read (``consent.reader.events``), bounded by the head and ``as_of``."""
    events_considered: int
    closed_accounts: pa.Table
    """Accounts the database holds as deactivated or deleted, in ``CLOSED_ACCOUNTS``."""
    partition_heads: tuple[tuple[int, str], ...] = ()
    """Every partition's head (seq, hash) of a ledger of several partitions; empty with one."""

    @property
    def head(self) -> dict[str, Any]:
        """The head as the manifest records it (with every partition's head, when there are several)."""
        head: dict[str, Any] = {"seq": self.head_seq, "hash": self.head_hash}
        if self.partition_heads:
            head["partitions"] = [{"seq": seq, "hash": digest} for seq, digest in self.partition_heads]
        return head


def read_snapshot(
    database: Database, *, settings: Sequence[str], as_of: datetime, log_key: str | None = None
) -> ConsentSnapshot:
    """The ledger head, the policy versions and the events of ``settings`` recorded at or before
    ``as_of`` up to that head, read in one transaction at snapshot isolation.

    With ``log_key`` (the log's verifier key) the position read is the latest signed checkpoint
    instead of the head: events up to its size, and its citation, so that what the build read is
    exactly what the checkpoint commits to. With several partitions, whose seqs interleave, that is
    each partition's events up to the size the checkpoint's partition state names for it."""
    with database.read() as session:
        if session.get_bind().dialect.name == "postgresql":  # SQLite: the read transaction is a snapshot
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        heads = [
            (int(seq), str(digest))
            for seq, digest in session.execute(
                select(LedgerHead.seq, LedgerHead.hash).order_by(LedgerHead.id)
            )
        ]
        if not heads:
            raise IntegrityFailure("the ledger head row is missing; run 'consentry db upgrade'")
        cited = None
        if log_key is not None:
            row = tlog.latest_checkpoint(session)
            if row is None:
                raise IntegrityFailure("the transparency log has no checkpoint to cite; sign one first")
            cited = citation(row, log_key=log_key)
            heads = _heads_at(session, row.size, len(heads))
        head = max(heads, key=lambda h: h[0])
        policies = tuple(load_policies(session))
        # each partition up to its own head (seqs interleave when there are several)
        position = reader.Position(tuple(seq for seq, _ in heads))
        events = reader.events(session, upto=position, settings=settings, until=as_of)
        closed = reader.closed_accounts(session)
    return ConsentSnapshot(
        partition_heads=tuple(heads) if len(heads) > 1 else (),
        head_seq=head[0],
        head_hash=head[1],
        checkpoint=cited,
        policies=policies,
        events=events,
        events_considered=events.num_rows,
        closed_accounts=closed,
    )


def _heads_at(session: Session, size: int, count: int) -> list[tuple[int, str]]:
    """Every partition's head (seq, hash) as the checkpoint of ``size`` leaves commits to it: with one
    partition its last event, with several the last event of each partition's tree in the checkpoint's
    state entry."""
    if count == 1:
        seqs = [size]
    elif size == 0:
        seqs = [0] * count
    else:
        trees = partitions.state_at(session, size - 1).trees
        if len(trees) != count:
            raise IntegrityFailure(f"checkpoint {size} names {len(trees)} partitions, the ledger has {count}")
        seqs = [ledger.seq_of(n - 1, p, count) if n else 0 for p, (n, _) in enumerate(trees)]
    wanted = select(ConsentEvent.seq, ConsentEvent.hash).where(ConsentEvent.seq.in_([s for s in seqs if s]))
    found = {int(seq): str(digest) for seq, digest in session.execute(wanted)}
    heads = []
    for seq in seqs:
        if seq and seq not in found:
            raise IntegrityFailure(f"the ledger has no event {seq}, which checkpoint {size} covers")
        heads.append((seq, found[seq] if seq else GENESIS))
    return heads
