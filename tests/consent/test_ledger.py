"""The hash chain: appends, verification, tamper detection, concurrency, bulk appends."""

from __future__ import annotations

import json
import multiprocessing
import threading
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.consent import ledger
from consentry.consent.ledger import NewEvent, canonical_json, chain_hash, event_document
from consentry.db import Database
from consentry.errors import InvalidInput

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(i: int, subject: str = "s1", value: str = "deny") -> NewEvent:
    return NewEvent(
        subject_key=subject,
        setting="assistant_training_posts",
        value=value,
        source="user",
        policy_version=1,
        recorded_at=T0 + timedelta(seconds=i),
        client="ios",
    )


def fill(database: Database, n: int) -> None:
    with database.write() as session:
        ledger.append(session, [event(i, value="allow" if i % 2 else "deny") for i in range(n)])


def verify(database: Database) -> ledger.VerifyReport:
    with database.read() as session:
        return ledger.verify(session)


def test_append_links_each_event_to_the_previous_one(database: Database) -> None:
    with database.write() as session:
        rows = ledger.append(session, [event(0), event(1)])
    assert [r.seq for r in rows] == [1, 2]
    assert rows[0].prev_hash == ledger.GENESIS
    assert rows[1].prev_hash == rows[0].hash
    expected = chain_hash(ledger.GENESIS, ledger.document_of(rows[0]))
    assert rows[0].hash == expected
    report = verify(database)
    assert report.ok and report.events == 2 and report.head_seq == 2 and report.head_hash == rows[1].hash


def test_invalid_event_writes_nothing(database: Database) -> None:
    bad = NewEvent("s1", "assistant_training_posts", "maybe", "user", 1, T0, "ios")
    with pytest.raises(InvalidInput) as error, database.write() as session:
        ledger.append(session, [event(0), bad])
    assert error.value.field == "value"
    assert verify(database).events == 0


@pytest.mark.parametrize(
    ("tamper", "bad_seq"),
    [
        ("UPDATE consent_events SET value = 'allow' WHERE seq = 3", 3),  # edited
        ("DELETE FROM consent_events WHERE seq = 3", 3),  # removed from the middle
        ("DELETE FROM consent_events WHERE seq = 5", 5),  # removed from the end
        ("UPDATE consent_events SET recorded_at = recorded_at WHERE seq = 0", None),  # no-op control
    ],
)
def test_verify_names_the_first_bad_seq(database: Database, tamper: str, bad_seq: int | None) -> None:
    fill(database, 5)
    with database.write() as session:
        session.execute(sa.text(tamper))
    report = verify(database)
    assert report.ok is (bad_seq is None)
    assert report.first_bad_seq == bad_seq


@pytest.mark.parametrize(
    ("tamper", "bad_seq", "says"),
    [
        ("UPDATE ledger_head SET hash = :h", None, "the head names hash " + "ab" * 32 + " for seq 5"),
        ("UPDATE ledger_head SET seq = 7", 6, "seqs 6 to 7 are missing: the chain ends at seq 5"),
        ("UPDATE ledger_head SET seq = 6", 6, "seq 6 is missing: the chain ends at seq 5"),
        ("UPDATE ledger_head SET seq = 4", 5, "event 5 is after the head (seq 4)"),
    ],
)
def test_verify_names_only_seqs_that_exist_or_the_head_promises(
    database: Database, tamper: str, bad_seq: int | None, says: str
) -> None:
    fill(database, 5)
    with database.write() as session:
        session.execute(sa.text(tamper), {"h": "ab" * 32})
    report = verify(database)
    assert not report.ok and report.first_bad_seq == bad_seq
    assert report.problem is not None and says in report.problem


def test_verify_catches_an_inserted_event(database: Database) -> None:
    fill(database, 3)
    with database.read() as session:
        last = session.execute(sa.text("SELECT hash FROM consent_events WHERE seq = 3")).scalar_one()
    forged = event_document(
        seq=4,
        subject="s1",
        setting="assistant_training_posts",
        value="allow",
        source="user",
        policy_version=1,
        recorded_at=T0,
        client="web",
    )
    with database.write() as session:
        session.execute(
            sa.text(
                "INSERT INTO consent_events (seq, subject_key, setting, value, source, policy_version, "
                "recorded_at, client, prev_hash, hash) VALUES (4, 's1', 'assistant_training_posts', 'allow', "
                "'user', 1, :at, 'web', :prev, :hash)"
            ),
            {"at": T0.replace(tzinfo=None), "prev": last, "hash": chain_hash(last, forged)},
        )
    report = verify(database)  # a perfectly chained forgery is still caught: the head names seq 3
    assert not report.ok and report.first_bad_seq == 4


def test_verify_catches_reordered_events(database: Database) -> None:
    fill(database, 4)
    with database.write() as session:
        session.execute(sa.text("UPDATE consent_events SET seq = 100 WHERE seq = 2"))
        session.execute(sa.text("UPDATE consent_events SET seq = 2 WHERE seq = 3"))
        session.execute(sa.text("UPDATE consent_events SET seq = 3 WHERE seq = 100"))
    report = verify(database)
    assert not report.ok and report.first_bad_seq == 2


def test_concurrent_threads_never_fork_the_chain(database: Database) -> None:
    def writer(n: int) -> None:
        for i in range(15):
            with database.write() as session:
                ledger.append(session, [event(i, subject=f"t{n}")])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = verify(database)
    assert report.ok and report.events == 90 and report.head_seq == 90


def _process_writer(url: str, n: int, count: int) -> None:
    database = Database(url)
    for i in range(count):
        with database.write() as session:
            ledger.append(session, [event(i, subject=f"p{n}")])
    database.dispose()


def test_concurrent_processes_never_fork_the_chain(database: Database) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_process_writer, args=(database.url, n, 20)) for n in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    report = verify(database)
    assert report.ok and report.events == 60


def test_bulk_append_in_chunks_matches_single_appends(database: Database) -> None:
    events = [event(i, subject=f"b{i % 3}", value="allow" if i % 2 else "deny") for i in range(50)]
    with database.write() as session:
        table = pa.table(
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
        seq, head = ledger.append_table(session, table, chunk=7)
    assert seq == 50
    report = verify(database)
    assert report.ok and report.head_hash == head
    # the same events appended one by one give the same chain
    with database.write() as session:
        session.execute(sa.text("DELETE FROM consent_events"))
        session.execute(sa.text("DELETE FROM tlog_tiles"))
        session.execute(sa.text("UPDATE ledger_head SET seq = 0, hash = :h"), {"h": ledger.GENESIS})
    with database.write() as session:
        rows = ledger.append(session, events)
    assert rows[-1].hash == head


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
    chosen_by=st.one_of(st.none(), texts),
)
def test_fast_canonical_form_equals_json(
    subject: str,
    setting: str,
    source: str,
    client: str,
    version: int | None,
    micros: int,
    value: str,
    chosen_by: str | None,
) -> None:
    """The hand-written canonical JSON of the ledger is byte-identical to the generic one, with and
    without the account that chose for linked accounts."""
    at = datetime(1990, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    new = NewEvent(subject, setting, value, source, version, at, client, chosen_by)
    [row] = ledger.link_events([new], 0, ledger.GENESIS)
    document = event_document(
        seq=1,
        subject=subject,
        setting=setting,
        value=value,
        source=source,
        policy_version=version,
        recorded_at=at,
        client=client,
        chosen_by=chosen_by,
    )
    assert row["hash"] == chain_hash(ledger.GENESIS, document)
    assert json.loads(canonical_json(document)) == document


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


def test_the_head_keeps_the_latest_time_in_the_chain(database: Database) -> None:
    with database.write() as session:
        ledger.append(session, [event(5), event(2)])
    with database.read() as session:
        assert ledger.lock_head(session).recorded_at == T0 + timedelta(seconds=5)
    with database.write() as session:
        ledger.append_table(session, table_of([event(1), event(9), event(3)]))
    with database.read() as session:
        head = ledger.lock_head(session)
    assert (head.seq, head.recorded_at) == (5, T0 + timedelta(seconds=9))


def test_a_live_time_is_never_before_the_chain(database: Database) -> None:
    ahead = datetime.now(UTC) + timedelta(minutes=5)  # another node's clock is ahead of this one's
    with database.write() as session:
        ledger.append(session, [NewEvent("s1", "assistant_realtime", "deny", "user", 1, ahead, "web")])
    with database.read() as session:
        assert ledger.lock_head(session).live_time() == ahead
        assert ledger.current_time(session) == ahead
    later = ahead + timedelta(seconds=1)
    assert ledger.Head(1, ledger.GENESIS, ahead).live_time(later) == later


def test_bulk_appends_refuse_times_in_the_future(database: Database) -> None:
    future = NewEvent(
        "s1", "assistant_realtime", "deny", "import", None, datetime.now(UTC) + timedelta(hours=1), "import"
    )
    with pytest.raises(InvalidInput) as error, database.write() as session:
        ledger.append_table(session, table_of([event(1), future]))
    assert error.value.field == "recorded_at"
    with database.read() as session:
        assert ledger.lock_head(session).seq == 0
