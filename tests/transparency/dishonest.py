"""The dishonest operator, for tests and for the README's walk-through: rewrite the consent ledger's
history straight in the database, the way someone holding the database would, and cover the tracks.

Three edits: ``rewrite`` flips the value of event ``--seq`` (deny becomes allow and back), ``truncate``
deletes every event after ``--seq``, ``reorder`` swaps events ``--seq`` and ``--seq + 1``. Afterwards
every chain hash, the head and the Merkle tree are recomputed with the documented rules and the
checkpoints signed before are deleted, so the operator's own ``consentry ledger verify`` passes again.
What still catches it is everything kept outside the database: a monitor's state, a witness's
cosignature, a saved receipt, a release manifest's checkpoint.

    python -m tests.transparency.dishonest --database sqlite:///consentry-data/consentry.db rewrite --seq 3

For a ledger of one partition (the default). Never point it at a ledger you care about.
"""

from __future__ import annotations

import argparse

import sqlalchemy as sa

from consentry.consent import ledger
from consentry.consent.models import ConsentEvent
from consentry.db import Database
from consentry.transparency import merkle, store

MODES = ("rewrite", "truncate", "reorder")
_COLUMNS = ("subject_key", "setting", "value", "source", "policy_version", "client")


def cover_tracks(database: Database) -> int:
    """Recompute every hash, the head and the tree from the events as they now are, and delete the
    checkpoints signed before; returns the number of events."""
    with database.write() as session:
        rows = session.scalars(sa.select(ConsentEvent).order_by(ConsentEvent.seq)).all()
        prev = ledger.GENESIS
        leaves = []
        for row in rows:
            document = ledger.document_of(row)
            digest = ledger.chain_hash(prev, document)
            session.execute(
                sa.update(ConsentEvent).where(ConsentEvent.seq == row.seq).values(prev_hash=prev, hash=digest)
            )
            leaves.append(merkle.leaf_hash(ledger.canonical_json(document)))
            prev = digest
        session.execute(sa.text("UPDATE ledger_head SET seq = :s, hash = :h"), {"s": len(rows), "h": prev})
        session.execute(sa.text("DELETE FROM tlog_tiles"))
        session.execute(sa.text("DELETE FROM tlog_checkpoints"))
        store.append_leaves(session, 0, leaves)
        return len(rows)


def tamper(database: Database, mode: str, seq: int) -> int:
    """Edit the history (``MODES``) at ``seq``, then cover the tracks; returns the number of events."""
    with database.write() as session:
        if mode == "rewrite":
            session.execute(
                sa.text(
                    "UPDATE consent_events SET value = CASE value WHEN 'deny' THEN 'allow' ELSE 'deny' END "
                    "WHERE seq = :s"
                ),
                {"s": seq},
            )
        elif mode == "truncate":
            session.execute(sa.text("DELETE FROM consent_events WHERE seq > :s"), {"s": seq})
        elif mode == "reorder":
            first, second = (
                session.execute(
                    sa.text(f"SELECT {', '.join(_COLUMNS)} FROM consent_events WHERE seq = :s"), {"s": s}
                ).one()
                for s in (seq, seq + 1)
            )
            assignments = ", ".join(f"{c} = :{c}" for c in _COLUMNS)
            for at, values in ((seq, second), (seq + 1, first)):
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
