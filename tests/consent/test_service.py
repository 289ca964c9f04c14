"""Consent use cases on a real database: the vectorised path agrees with per-account reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
from sqlalchemy.orm import Session

from consentry.consent import ledger, service
from consentry.consent.evaluate import ACCOUNT_SCHEMA
from consentry.consent.service import ConsentContext
from consentry.db import Database, utcnow
from consentry.social.service import create_account, deactivate_account, delete_account
from tests.conftest import make_account


def test_evaluate_all_agrees_with_settings_view(database: Database, ctx: ConsentContext) -> None:
    created = datetime(2021, 1, 1, tzinfo=UTC)
    people = [
        ("us", "US", 1990),
        ("de", "DE", 1980),
        ("kid", "US", utcnow().year - 12),
        ("ch", "CH", None),
        ("gone", "FR", 1970),
        ("off", "GB", 1960),
    ]
    ids = {
        h: make_account(database, handle=h, country=c, birth_year=b, created_at=created)[0]
        for h, c, b in people
    }
    with database.write() as session:
        service.change_settings(
            session, account_id=ids["us"], changes={"third_party_sharing": "deny"}, client="web", ctx=ctx
        )
        service.change_settings(
            session,
            account_id=ids["de"],
            changes={"assistant_training_posts": "allow"},
            client="ios",
            ctx=ctx,
        )
        service.change_settings(
            session, account_id=ids["gone"], changes={"assistant_realtime": "allow"}, client="ios", ctx=ctx
        )
        service.change_settings(
            session, account_id=ids["off"], changes={"assistant_realtime": "allow"}, client="ios", ctx=ctx
        )
    with database.write() as session:
        delete_account(session, account_id=ids["gone"])
        deactivate_account(session, account_id=ids["off"])
    at = utcnow() + timedelta(seconds=1)
    with database.read() as session:
        table = service.evaluate_all(session, at=at, ctx=ctx)
        rows = {r["account_id"]: r for r in table.to_pylist()}
        for account_id in ids.values():
            for state in service.settings_view(session, account_id=account_id, ctx=ctx, at=at):
                assert rows[account_id][state.key] == (state.value == "allow")
    assert rows[ids["de"]]["assistant_training_posts"] is True
    assert rows[ids["de"]]["third_party_sharing"] is False
    assert rows[ids["us"]]["third_party_sharing"] is False and rows[ids["us"]]["assistant_realtime"] is True
    assert not any(rows[ids[h]][k] for h in ("kid", "gone", "off") for k in ctx.catalog.keys)


def test_events_table_reads_only_events_up_to_until(database: Database, ctx: ConsentContext) -> None:
    account_id, _ = make_account(database)
    first, second = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, 0, 0, 1, tzinfo=UTC)
    with database.write() as session:
        service.change_settings(
            session,
            account_id=account_id,
            changes={"assistant_realtime": "deny"},
            client="web",
            ctx=ctx,
            at=first,
        )
        service.change_settings(
            session,
            account_id=account_id,
            changes={"assistant_realtime": "allow"},
            client="web",
            ctx=ctx,
            at=second,
        )
    with database.read() as session:
        everything = service.events_table(session).to_pylist()
        early = service.events_table(session, until=first).to_pylist()
    assert [(e["value"], e["recorded_at"]) for e in everything] == [("deny", first), ("allow", second)]
    assert [(e["account_id"], e["value"], e["seq"]) for e in early] == [(account_id, "deny", 1)]


def test_load_accounts_keeps_every_column_in_id_order(database: Database) -> None:
    created = datetime(2021, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    with database.write() as session:
        create_account(session, handle="x1", country="FR", birth_year=None, created_at=created)
        second = create_account(session, handle="x2", country=None, birth_year=1980, created_at=created)
        create_account(session, handle="x3", country="NA", birth_year=1999, created_at=created)  # Namibia
        session.flush()
        deactivate_account(session, account_id=second.id, at=created + timedelta(days=1))
    with database.read() as session:
        table = service.load_accounts(session)
        later = service.load_accounts(session, above=int(table["account_id"][0].as_py()))
    rows = table.to_pylist()
    assert table.schema == ACCOUNT_SCHEMA
    assert [r["account_id"] for r in rows] == sorted(r["account_id"] for r in rows)
    assert [r["country"] for r in rows] == ["FR", None, "NA"]
    assert [r["birth_year"] for r in rows] == [None, 1980, 1999]
    assert rows[0]["created_at"] == created and rows[1]["status"] == "deactivated"
    assert (
        rows[1]["status_changed_at"] == created + timedelta(days=1) and rows[0]["status_changed_at"] is None
    )
    assert later.to_pylist() == rows[1:]


def _realtime(session: Session, account_id: int, ctx: ConsentContext) -> tuple[str, int | None]:
    [state] = [
        s
        for s in service.settings_view(session, account_id=account_id, ctx=ctx)
        if s.key == "assistant_realtime"
    ]
    return state.value, state.seq


def test_a_write_after_a_clock_ahead_is_the_state(database: Database, ctx: ConsentContext) -> None:
    """Another node whose clock runs ahead wrote last: this node's write still follows it, and is read."""
    account_id, _ = make_account(database)
    ahead = utcnow() + timedelta(minutes=2)
    with database.write() as session:
        service.change_settings(
            session,
            account_id=account_id,
            changes={"assistant_realtime": "deny"},
            client="web",
            ctx=ctx,
            at=ahead,
        )
    with database.write() as session:
        [receipt] = service.change_settings(
            session, account_id=account_id, changes={"assistant_realtime": "allow"}, client="ios", ctx=ctx
        )
    assert receipt["receipt"]["event"]["recorded_at"] >= ahead.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with database.read() as session:
        assert _realtime(session, account_id, ctx) == ("allow", receipt["receipt"]["chain"]["seq"])


def test_an_import_of_the_past_does_not_override_a_later_live_choice(
    database: Database, ctx: ConsentContext
) -> None:
    """DESIGN.md: a bulk import ranks by its own (historic) times; a choice made live later stands."""
    account_id, _ = make_account(database)
    with database.write() as session:
        [live] = service.change_settings(
            session, account_id=account_id, changes={"assistant_realtime": "allow"}, client="ios", ctx=ctx
        )
        subject = ledger.subject_key_for(session, account_id)
    past = pa.table(
        {
            "subject": [subject],
            "setting": ["assistant_realtime"],
            "value": ["deny"],
            "source": ["import"],
            "client": ["import"],
            "policy_version": pa.array([1], pa.int64()),
            "recorded_at": pa.array([utcnow() - timedelta(days=30)], pa.timestamp("us", tz="UTC")),
        }
    )
    with database.write() as session:
        seq, _ = ledger.append_table(session, past)
    assert seq > live["receipt"]["chain"]["seq"]  # appended later in the chain, yet older in time
    with database.read() as session:
        assert _realtime(session, account_id, ctx) == ("allow", live["receipt"]["chain"]["seq"])
        history_at = utcnow() - timedelta(days=1)
        [before] = [
            s
            for s in service.settings_view(session, account_id=account_id, ctx=ctx, at=history_at)
            if s.key == "assistant_realtime"
        ]
    assert (before.value, before.seq) == ("deny", seq)  # it does describe the past
