"""The tree in the database: every ledger event one leaf, appended by the ledger's own transaction
(group commit and bulk import alike), back-filled for ledgers older than the tree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
import rfc8785
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from hypothesis import given, settings
from hypothesis import strategies as st
from pymerkle import InmemoryTree

from consentry.consent import ledger
from consentry.consent.ledger import NewEvent, canonical_json, document_of, event_document
from consentry.consent.models import ConsentEvent
from consentry.db import Database
from consentry.errors import InvalidInput
from consentry.migrate import alembic_config, upgrade
from consentry.transparency import merkle, store

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(i: int, subject: str = "s1") -> NewEvent:
    return NewEvent(
        subject_key=subject,
        setting="assistant_training_posts" if i % 3 else "third_party_sharing",
        value="allow" if i % 2 else "deny",
        source="user",
        policy_version=None if i % 5 == 0 else 1,
        recorded_at=T0 + timedelta(seconds=i, microseconds=i),
        client="ios",
    )


def table_of(events: list[NewEvent]) -> pa.Table:
    return pa.table(
        {
            "subject": [e.subject_key for e in events],
            "setting": [e.setting for e in events],
            "value": [e.value for e in events],
            "source": [e.source for e in events],
            "client": [e.client for e in events],
            "policy_version": pa.array([e.policy_version for e in events], pa.int64()),
            "recorded_at": pa.array([e.recorded_at for e in events], pa.timestamp("us", tz="UTC")),
        }
    )


def independent_root(database: Database) -> tuple[int, bytes]:
    """The root pymerkle computes over the events' canonical JSON, read back from the table."""
    tree = InmemoryTree(algorithm="sha256")
    with database.read() as session:
        rows = session.scalars(sa.select(ConsentEvent).order_by(ConsentEvent.seq)).all()
        for row in rows:
            tree.append_entry(rfc8785.dumps(document_of(row)))
    size = len(rows)
    return size, tree.get_root(size) if size else merkle.EMPTY_ROOT


def stored_root(database: Database) -> bytes:
    with database.read() as session:
        size = session.scalar(sa.text("SELECT seq FROM ledger_head"))
        return store.root(session, int(size))


def test_live_appends_in_batches_keep_the_tree_equal_to_the_events(database: Database) -> None:
    events = [event(i, subject=f"s{i % 7}") for i in range(600)]
    at = 0
    for batch in (1, 2, 253, 1, 300, 43):
        with database.write() as session:
            ledger.append(session, events[at : at + batch])
        at += batch
        size, root = independent_root(database)
        assert size == at and stored_root(database) == root
    with database.read() as session:
        tiles = session.execute(
            sa.text("SELECT level, idx, length(data) FROM tlog_tiles ORDER BY 1, 2")
        ).all()
    assert [tuple(t) for t in tiles] == [(0, 0, 8192), (0, 1, 8192), (0, 2, 88 * 32), (1, 0, 2 * 32)]


def test_a_failed_append_leaves_the_tree_untouched(database: Database) -> None:
    with database.write() as session:
        ledger.append(session, [event(0), event(1)])
    with pytest.raises(InvalidInput), database.write() as session:
        ledger.append(session, [event(2), NewEvent("s", "x", "maybe", "user", 1, T0, "ios")])
    with pytest.raises(RuntimeError), database.write() as session:  # noqa: PT012
        ledger.append(session, [event(2), event(3)])
        raise RuntimeError("the transaction fails after the append")
    assert independent_root(database) == (2, stored_root(database))


def test_bulk_appends_build_the_same_tree_as_live_ones(database: Database) -> None:
    events = [event(i, subject=f"b{i % 3}") for i in range(700)]
    with database.write() as session:
        ledger.append(session, events[:5])
    with database.write() as session:
        ledger.append_table(session, table_of(events[5:]), chunk=97)
    size, root = independent_root(database)
    assert size == 700 and stored_root(database) == root


texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(
    subject=texts,
    setting=texts,
    source=st.sampled_from(ledger.SOURCES),
    client=st.sampled_from(ledger.LEDGER_CLIENTS),
    version=st.one_of(st.none(), st.integers(0, 10**6)),
    micros=st.integers(0, 10**15),
    value=st.sampled_from(ledger.VALUES),
    seq=st.integers(1, 2**53 - 1),
    chosen_by=st.one_of(st.none(), texts),
)
def test_the_leaf_entry_is_the_rfc_8785_form_of_the_event(
    subject: str,
    setting: str,
    source: str,
    client: str,
    version: int | None,
    micros: int,
    value: str,
    seq: int,
    chosen_by: str | None,
) -> None:
    """The ledger's canonical JSON of an event is the JSON Canonicalization Scheme's, byte for byte, so
    any RFC 8785 library rebuilds a receipt's leaf from the event it carries."""
    at = datetime(1990, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    document = event_document(
        seq=seq,
        subject=subject,
        setting=setting,
        value=value,
        source=source,
        policy_version=version,
        recorded_at=at,
        client=client,
        chosen_by=chosen_by,
    )
    assert canonical_json(document) == rfc8785.dumps(document)


def test_the_migration_back_fills_the_tree_of_an_existing_ledger(database: Database) -> None:
    """A ledger written before the tree existed gets every event as a leaf, in seq order."""
    events = [event(i, subject=f"m{i % 4}") for i in range(300)]
    with database.write() as session:
        ledger.append(session, events)
    with database.write() as session:
        session.execute(sa.text("DELETE FROM tlog_tiles"))
    with database.engine.begin() as connection:
        head = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one()
        connection.exec_driver_sql("DROP TABLE tlog_tiles")
        connection.exec_driver_sql("DROP TABLE tlog_checkpoints")
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0010'")
    upgrade(database, "0011")  # the tree's revision alone; later ones are applied already
    head = ScriptDirectory.from_config(alembic_config(database)).get_current_head()
    with database.engine.begin() as connection:
        connection.exec_driver_sql(f"UPDATE alembic_version SET version_num = '{head}'")
    size, root = independent_root(database)
    assert size == 300 and stored_root(database) == root
