"""The dishonest operator, for tests and for the README's walk-through: rewrite the consent ledger's
history straight in the database, the way someone holding the database would, and cover the tracks.

Three edits, each inside the partition of event ``--seq`` (a ledger of one partition, the default, has
only one): ``rewrite`` flips the value of event ``--seq`` (deny becomes allow and back), ``truncate``
deletes every later event of its partition, ``reorder`` swaps it with the next event of its partition
(``--seq + 1`` with one partition, ``--seq + P`` with ``P``). Afterwards every chain hash, the heads
and the Merkle trees are recomputed with the documented rules and the checkpoints signed before are
deleted, so the operator's own ``consentry ledger verify`` passes again. With several partitions the
log of partition states is rebuilt too: every earlier state is signed again over the rewritten trees at
the sizes it named, up to the first state that named events which are gone. What still catches it is
everything kept outside the database: a monitor's state, a witness's cosignature, a saved receipt, a
release manifest's checkpoint.

    python -m tests.transparency.dishonest --database sqlite:///consentry-data/consentry.db rewrite --seq 3

Never point it at a ledger you care about.
"""

from __future__ import annotations

import argparse

import sqlalchemy as sa

from consentry.consent import ledger
from consentry.consent.models import ConsentEvent
from consentry.db import Database
from consentry.transparency import merkle, partitions, store
from consentry.transparency.models import PartitionState

MODES = ("rewrite", "truncate", "reorder")
_COLUMNS = ("subject_key", "setting", "value", "source", "policy_version", "client")


def cover_tracks(database: Database) -> int:
    """Recompute every hash, the heads and the trees from the events as they now are (with several
    partitions, the log of partition states too), and delete the checkpoints signed before; returns the
    number of events."""
    with database.write() as session:
        count = ledger.partition_count(session)
        rows = session.scalars(sa.select(ConsentEvent).order_by(ConsentEvent.seq)).all()
        prev = [ledger.GENESIS] * count
        last = [0] * count
        leaves: list[list[bytes]] = [[] for _ in range(count)]
        for row in rows:
            partition = ledger.partition_of_seq(row.seq, count)
            document = ledger.document_of(row)
            digest = ledger.chain_hash(prev[partition], document)
            session.execute(
                sa.update(ConsentEvent)
                .where(ConsentEvent.seq == row.seq)
                .values(prev_hash=prev[partition], hash=digest)
            )
            leaves[partition].append(merkle.leaf_hash(ledger.canonical_json(document)))
            prev[partition], last[partition] = digest, row.seq
        for partition in range(count):
            session.execute(
                sa.text("UPDATE ledger_head SET seq = :s, hash = :h WHERE id = :id"),
                {"s": last[partition], "h": prev[partition], "id": partition + 1},
            )
        session.execute(sa.text("DELETE FROM tlog_tiles"))
        session.execute(sa.text("DELETE FROM tlog_checkpoints"))
        if count == 1:
            store.append_leaves(session, 0, leaves[0])
            return len(rows)
        session.execute(sa.text("DELETE FROM tlog_partition_tiles"))
        for partition in range(count):
            store.append_leaves(session, 0, leaves[partition], partition=partition)
        earlier = [
            partitions.parse_states(entry)
            for entry in session.scalars(sa.select(PartitionState.entry).order_by(PartitionState.idx))
        ]
        session.execute(sa.text("DELETE FROM tlog_partition_states"))
        for index, states in enumerate(earlier):
            sizes = [size for size, _ in states.trees]
            if any(size > len(leaves[p]) for p, size in enumerate(sizes)):
                break  # this state named events that are gone: it and every later one go too
            again = partitions.States(
                tuple((size, store.root(session, size, partition=p)) for p, size in enumerate(sizes))
            )
            session.add(PartitionState(idx=index, entry=again.text))
            store.append_leaves(session, index, merkle.leaf_hash(again.entry))
        return len(rows)


def tamper(database: Database, mode: str, seq: int) -> int:
    """Edit the history (``MODES``) at ``seq`` inside its partition, then cover the tracks; returns the
    number of events."""
    with database.write() as session:
        count = ledger.partition_count(session)
        if mode == "rewrite":
            session.execute(
                sa.text(
                    "UPDATE consent_events SET value = CASE value WHEN 'deny' THEN 'allow' ELSE 'deny' END "
                    "WHERE seq = :s"
                ),
                {"s": seq},
            )
        elif mode == "truncate":
            later = [
                s
                for s in session.scalars(sa.select(ConsentEvent.seq).where(ConsentEvent.seq > seq))
                if ledger.partition_of_seq(s, count) == ledger.partition_of_seq(seq, count)
            ]
            session.execute(sa.delete(ConsentEvent).where(ConsentEvent.seq.in_(later)))
        elif mode == "reorder":
            first, second = (
                session.execute(
                    sa.text(f"SELECT {', '.join(_COLUMNS)} FROM consent_events WHERE seq = :s"), {"s": s}
                ).one()
                for s in (seq, seq + count)
            )
            assignments = ", ".join(f"{c} = :{c}" for c in _COLUMNS)
            for at, values in ((seq, second), (seq + count, first)):
                session.execute(
                    sa.text(f"UPDATE consent_events SET {assignments} WHERE seq = :seq"),
                    {**dict(zip(_COLUMNS, values, strict=True)), "seq": at},
                )
        else:
            raise ValueError(f"mode is one of {MODES}, not {mode!r}")
    return cover_tracks(database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database", required=True, help="the database URL (sqlite:///path or postgresql...)"
    )
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--seq", type=int, required=True)
    args = parser.parse_args()
    database = Database(args.database)
    events = tamper(database, args.mode, args.seq)
    print(
        f"{args.mode} at seq {args.seq}: chain, head and tree recomputed over {events} events, "
        "checkpoints deleted"
    )


if __name__ == "__main__":
    main()
