"""``ledger verify``'s audit of the log: the tree recomputed from the events and compared with the stored
tiles, the latest checkpoint's signature and root checked against the events. On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from pymerkle import InmemoryTree

from consentry.config import Settings
from consentry.consent import ledger
from consentry.consent.ledger import NewEvent
from consentry.consent.models import ConsentEvent
from consentry.db import Database
from consentry.transparency import service
from consentry.transparency.audit import AuditReport, audit
from consentry.transparency.note import NoteSigner
from consentry.transparency.service import LogContext

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fill(database: Database, n: int, start: int = 0) -> None:
    with database.write() as session:
        ledger.append(
            session,
            [
                NewEvent(f"s{i % 7}", "third_party_sharing", "allow" if i % 2 else "deny", "user", 1,
                         T0 + timedelta(seconds=i), "web")
                for i in range(start, start + n)
            ],
        )  # fmt: skip


def checkpoint(database: Database, log: LogContext) -> int:
    with database.write() as session:
        row = service.make_checkpoint(session, log=log, force=True)
        assert row is not None
        return row.size


def run(database: Database, log: LogContext | None) -> AuditReport:
    with database.read() as session:
        return audit(session, log_key=log.signer.verifier if log else None)


@pytest.fixture
def log(settings: Settings) -> LogContext:
    return LogContext.from_settings(settings)


def test_an_honest_log_passes_and_its_root_is_pymerkles(database: Database, log: LogContext) -> None:
    fill(database, 700)  # two full leaf tiles and a partial one
    assert checkpoint(database, log) == 700
    fill(database, 30, start=700)
    with database.read() as session:
        report = audit(session, log_key=log.signer.verifier)
        entries = [ledger.canonical_json(ledger.document_of(e)) for e in session.scalars(
            sa.select(ConsentEvent).order_by(ConsentEvent.seq))]  # fmt: skip
    tree = InmemoryTree(algorithm="sha256")
    for entry in entries:
        tree.append_entry(entry)
    assert report.ok, report.problem
    assert report.root == tree.get_root(730).hex()
    assert report.checkpoint_size == 700
    assert any("latest checkpoint (size 700)" in note for note in report.notes)


def test_an_empty_ledger_passes(database: Database, log: LogContext) -> None:
    report = run(database, log)
    assert report.ok and report.notes == [
        "tree of 0 leaves matches the events, root " + hashlib.sha256(b"").hexdigest(),
        "no checkpoint signed yet",
    ]


@pytest.mark.parametrize(("leaf", "level"), [(3, 0), (300, 0), (612, 0), (0, 1)])
def test_a_tree_tile_that_does_not_match_the_events_names_the_seq(
    database: Database, log: LogContext, leaf: int, level: int
) -> None:
    fill(database, 620)
    with database.write() as session:
        index, at = divmod(leaf, 256)
        data = bytearray(session.execute(
            sa.text("SELECT data FROM tlog_tiles WHERE level = :l AND idx = :i"), {"l": level, "i": index}
        ).scalar_one())  # fmt: skip
        data[at * 32] ^= 1
        session.execute(
            sa.text("UPDATE tlog_tiles SET data = :d WHERE level = :l AND idx = :i"),
            {"d": bytes(data), "l": level, "i": index},
        )
    report = run(database, log)
    assert not report.ok
    first = (leaf << (8 * level)) + 1
    assert report.first_bad_seq == first
    assert f"event {first}" in report.problem and "does not match the events" in report.problem


def test_a_missing_tile_and_extra_leaves_are_named(database: Database, log: LogContext) -> None:
    fill(database, 300)
    with database.write() as session:
        session.execute(sa.text("DELETE FROM tlog_tiles WHERE level = 0 AND idx = 0"))
    report = run(database, log)
    assert not report.ok and report.first_bad_seq == 1
    assert "tile/0/000 lacks event 1" in report.problem

    fill(database, 1, start=300)  # the tree grows past a ledger whose last event is then removed
    with database.write() as session:
        session.execute(sa.text("DELETE FROM tlog_tiles"))
        session.execute(sa.text("DELETE FROM consent_events WHERE seq = 301"))
        session.execute(sa.text("UPDATE ledger_head SET seq = 300, hash = (SELECT hash FROM consent_events "
                                "WHERE seq = 300)"))  # fmt: skip
    with database.write() as session:
        rows = session.scalars(sa.select(ConsentEvent).order_by(ConsentEvent.seq)).all()
        leaves = [service.merkle.leaf_hash(ledger.canonical_json(ledger.document_of(r))) for r in rows]
        service.store.append_leaves(session, 0, [*leaves, b"\x07" * 32])
    report = run(database, log)
    assert not report.ok and report.first_bad_seq is None
    assert "the stored tree holds 301 leaves but the ledger holds 300 events" in report.problem


def test_events_edited_after_a_checkpoint_fail_against_it(database: Database, log: LogContext) -> None:
    """The chain and tree recomputed consistently (what a dishonest operator does) still disagree with
    the checkpoint signed before the edit."""
    fill(database, 40)
    checkpoint(database, log)
    with database.write() as session:
        session.execute(sa.text("UPDATE consent_events SET value = 'allow' WHERE seq = 3"))
        rows = session.scalars(sa.select(ConsentEvent).order_by(ConsentEvent.seq)).all()
        prev, leaves = ledger.GENESIS, []
        for row in rows:
            document = ledger.document_of(row)
            row.prev_hash, row.hash = prev, ledger.chain_hash(prev, document)
            prev = row.hash
            leaves.append(service.merkle.leaf_hash(ledger.canonical_json(document)))
        session.execute(sa.text("UPDATE ledger_head SET hash = :h"), {"h": prev})
        session.execute(sa.text("DELETE FROM tlog_tiles"))
        service.store.append_leaves(session, 0, leaves)
    report = run(database, log)
    assert not report.ok and report.chain.ok
    assert "events 1 to 40 do not hash to the root of the latest checkpoint (size 40)" in report.problem


def test_a_checkpoint_past_the_ledger_or_not_signed_by_the_log_fails(
    database: Database, log: LogContext, settings: Settings
) -> None:
    fill(database, 10)
    checkpoint(database, log)
    report = run(database, None)
    assert not report.ok and "verifier key is unknown" in report.problem

    other = NoteSigner(log.origin, LogContext.from_settings(
        settings.model_copy(update={"home": settings.home / "other"})).signer.private_key)  # fmt: skip
    with database.write() as session:
        row = service.latest_checkpoint(session)
        assert row is not None
        row.note = other.sign(service.parse_checkpoint(row.note)[0].text)
    report = run(database, log)
    assert not report.ok and "(size 10) does not verify" in report.problem

    with database.write() as session:
        session.execute(sa.text("DELETE FROM tlog_checkpoints"))
    checkpoint(database, log)
    with database.write() as session:
        session.execute(sa.text("DELETE FROM consent_events WHERE seq > 8"))
        session.execute(sa.text("UPDATE ledger_head SET seq = 8, hash = (SELECT hash FROM consent_events "
                                "WHERE seq = 8)"))  # fmt: skip
        session.execute(sa.text("DELETE FROM tlog_tiles"))
        rows = session.scalars(sa.select(ConsentEvent).order_by(ConsentEvent.seq)).all()
        service.store.append_leaves(
            session, 0, [service.merkle.leaf_hash(ledger.canonical_json(ledger.document_of(r))) for r in rows]
        )
    report = run(database, log)
    assert not report.ok
    assert "covers 10 events but the ledger holds 8: events were removed" in report.problem
