"""The one bulk reader of consent data: what it reads equals what the ORM reads, bounded by a ledger
position (per partition on a partitioned ledger), and starting after another for exactly the delta."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select

from consentry.consent import ledger, reader
from consentry.consent.evaluate import ACCOUNT_SCHEMA, EVENT_SCHEMA
from consentry.consent.models import ConsentEvent, Subject
from consentry.consent.service import ChangeRequest, ConsentContext, change_settings_many
from consentry.db import Database
from consentry.errors import IntegrityFailure
from consentry.social.models import Account
from consentry.social.service import deactivate_account
from tests.conftest import make_account

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = ("assistant_training_posts", "assistant_realtime", "third_party_sharing")

Row = tuple[int, str, str, datetime, int]


def reference_events(
    database: Database, *, upto: reader.Position, after: reader.Position | None = None
) -> list[Row]:
    """The events of mapped accounts at or before ``upto`` (after ``after``), read through the ORM and
    filtered in Python by each event's partition: the reader's answer, computed another way."""
    count = upto.partitions
    with database.read() as session:
        rows = session.execute(
            select(
                Subject.account_id,
                ConsentEvent.setting,
                ConsentEvent.value,
                ConsentEvent.recorded_at,
                ConsentEvent.seq,
            ).join(Subject, Subject.subject_key == ConsentEvent.subject_key)
        ).all()
    found: list[Row] = []
    for account_id, setting, value, recorded_at, seq in rows:
        partition = (seq - 1) % count
        if seq <= upto.heads[partition] and (after is None or seq > after.heads[partition]):
            found.append((int(account_id), setting, value, recorded_at, int(seq)))
    return sorted(found)


def as_rows(table: Any) -> list[Row]:
    return sorted(
        (r["account_id"], r["setting"], r["value"], r["recorded_at"], r["seq"]) for r in table.to_pylist()
    )


def record(
    database: Database, ctx: ConsentContext, ids: list[int], rng: random.Random, n: int, t: int
) -> int:
    """``n`` random choices of random accounts, one transaction each; returns the next time step."""
    for _ in range(n):
        with database.write() as session:
            change_settings_many(
                session,
                [
                    ChangeRequest(
                        rng.choice(ids), {rng.choice(SETTINGS): rng.choice(("allow", "deny"))}, "web"
                    )
                ],
                ctx=ctx,
                at=T0 + timedelta(minutes=t),
            )
        t += 1
    return t


@pytest.mark.parametrize("partitions", [1, 3])
def test_events_are_bounded_by_a_position_and_read_exactly_after_another(
    database: Database, ctx: ConsentContext, partitions: int
) -> None:
    if partitions > 1:
        with database.write() as session:
            ledger.set_partitions(session, partitions)
    rng = random.Random(partitions)
    ids = [make_account(database, handle=f"user{i}")[0] for i in range(6)]
    t = record(database, ctx, ids, rng, 12, 0)
    with database.read() as session:
        first = reader.position(session)
    t = record(database, ctx, ids, rng, 12, t)
    with database.write() as session:  # a deleted account's mapping goes: its events are anonymous
        session.execute(delete(Subject).where(Subject.account_id == ids[0]))
    with database.read() as session:
        second = reader.position(session)
    record(database, ctx, ids, rng, 6, t)  # after the second position: never read below
    assert first.partitions == second.partitions == partitions
    with database.read() as session:
        upto_first = reader.events(session, upto=first)
        upto_second = reader.events(session, upto=second, ordered=True)
        delta = reader.events(session, upto=second, after=first)
        some = reader.events(session, upto=second, settings=SETTINGS[:1], until=T0 + timedelta(minutes=20))
        none = reader.events(session, upto=second, settings=[])
    assert upto_second.schema == EVENT_SCHEMA
    assert as_rows(upto_first) == reference_events(database, upto=first)
    assert as_rows(upto_second) == reference_events(database, upto=second)
    assert upto_second["seq"].to_pylist() == sorted(upto_second["seq"].to_pylist())
    assert as_rows(delta) == reference_events(database, upto=second, after=first)
    assert delta.num_rows and ids[0] not in delta["account_id"].to_pylist()
    assert as_rows(some) == [
        r
        for r in reference_events(database, upto=second)
        if r[1] == SETTINGS[0] and r[3] <= T0 + timedelta(minutes=20)
    ]
    assert none.num_rows == 0


def test_accounts_of_and_every_account_agree_with_the_table(database: Database, ctx: ConsentContext) -> None:
    ids = [make_account(database, handle=f"user{i}", country=c)[0] for i, c in enumerate(["US", None, "NA"])]
    with database.write() as session:
        deactivate_account(session, account_id=ids[1], at=T0)
    record(database, ctx, ids, random.Random(7), 8, 0)
    with database.read() as session:
        position = reader.position(session)
        every = reader.accounts(session)
        above = reader.accounts(session, above=ids[0])
        accounts, events = reader.accounts_of(
            session, account_ids=[ids[2], ids[0]], settings=SETTINGS, upto=position, chunk=1
        )
        stored = {
            a.id: (a.created_at, a.country, a.status, a.status_changed_at)
            for a in session.scalars(select(Account))
        }
    assert every.schema == accounts.schema == ACCOUNT_SCHEMA
    assert every["account_id"].to_pylist() == sorted(stored)
    assert above["account_id"].to_pylist() == ids[1:]
    for row in every.to_pylist():
        facts = (row["created_at"], row["country"], row["status"], row["status_changed_at"])
        assert facts == stored[row["account_id"]]
    assert accounts["account_id"].to_pylist() == [ids[0], ids[2]]
    assert as_rows(events) == [
        r for r in reference_events(database, upto=position) if r[0] in (ids[0], ids[2])
    ]


def test_closed_accounts_say_whether_the_mapping_is_left(database: Database, ctx: ConsentContext) -> None:
    ids = [make_account(database, handle=f"user{i}")[0] for i in range(3)]
    record(database, ctx, ids, random.Random(3), 6, 0)
    with database.write() as session:
        deactivate_account(session, account_id=ids[0], at=T0)
        deactivate_account(session, account_id=ids[1], at=T0)
        session.execute(delete(Subject).where(Subject.account_id == ids[1]))
    with database.read() as session:
        closed = reader.closed_accounts(session).to_pylist()
    assert sorted((r["account_id"], r["status"], r["status_changed_at"], r["mapped"]) for r in closed) == [
        (ids[0], "deactivated", T0, True),
        (ids[1], "deactivated", T0, False),
    ]


def test_a_position_names_every_partition() -> None:
    with pytest.raises(IntegrityFailure):
        reader.Position(())
    with pytest.raises(IntegrityFailure):
        reader.Position((3, -1))
    assert reader.Position.start(2).heads == (0, 0)
    assert reader.Position((5,)).bound("e.seq") == "e.seq <= 5"
