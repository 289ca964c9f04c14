"""Consent publishes its opt-outs inside the writer's transaction, and fails closed without a subscriber."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consentry.consent import events
from consentry.consent.importer import import_events
from consentry.consent.models import ConsentEvent
from consentry.consent.service import ConsentContext, change_settings
from consentry.db import Database
from consentry.errors import IntegrityFailure
from tests.conftest import make_account


def ledger_size(database: Database) -> int:
    with database.read() as session:
        return int(session.scalar(select(func.count()).select_from(ConsentEvent)) or 0)


@pytest.fixture
def heard(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, list[int]]]:
    """Replace the process's subscribers with one that records what it is told."""
    told: list[dict[str, list[int]]] = []

    def listen(session: Session, change: events.OptOuts) -> None:
        assert session.in_transaction()
        told.append({s.key: sorted(int(a) for a in ids) for s, ids in change.denied().items()})

    monkeypatch.setattr(events, "_subscribers", [listen])
    return told


def test_an_opt_out_is_published_with_its_accounts_and_an_allow_is_not(
    database: Database, ctx: ConsentContext, heard: list[dict[str, list[int]]]
) -> None:
    ada, _ = make_account(database, handle="ada")
    with database.write() as session:
        change_settings(
            session, account_id=ada, changes={"assistant_realtime": "allow"}, client="web", ctx=ctx
        )
    assert heard == []
    with database.write() as session:
        change_settings(
            session,
            account_id=ada,
            changes={"third_party_sharing": "deny", "assistant_realtime": "deny"},
            client="web",
            ctx=ctx,
        )
    assert heard == [{"third_party_sharing": [ada], "assistant_realtime": [ada]}]


def test_without_a_subscriber_an_opt_out_is_refused_and_nothing_is_recorded(
    database: Database, ctx: ConsentContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada, _ = make_account(database, handle="ada")
    monkeypatch.setattr(events, "_subscribers", [])
    with pytest.raises(IntegrityFailure, match=r"consentry\.wiring"), database.write() as session:
        change_settings(
            session, account_id=ada, changes={"third_party_sharing": "deny"}, client="web", ctx=ctx
        )
    assert ledger_size(database) == 0
    with database.write() as session:  # an allow owes no revocation: it is recorded
        change_settings(
            session, account_id=ada, changes={"third_party_sharing": "allow"}, client="web", ctx=ctx
        )
    assert ledger_size(database) == 1


def write_import(lake: Path, rows: list[tuple[int, str]]) -> None:
    """A lake with one account per row's id and its consent events."""
    (lake / "accounts").mkdir(parents=True)
    (lake / "consent_events").mkdir()
    ids = sorted({account for account, _ in rows})
    pq.write_table(
        pa.table(
            {
                "account_id": pa.array(ids, pa.int64()),
                "handle": [f"user{i}" for i in ids],
                "created_at": pa.array([0] * len(ids), pa.timestamp("us", tz="UTC")),
                "country": ["US"] * len(ids),
                "birth_year": pa.array([1990] * len(ids), pa.int16()),
                "protected": [False] * len(ids),
                "status": ["active"] * len(ids),
                "status_changed_at": pa.array([None] * len(ids), pa.timestamp("us", tz="UTC")),
            }
        ),
        lake / "accounts" / "part-0.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "account_id": pa.array([a for a, _ in rows], pa.int64()),
                "setting": ["third_party_sharing"] * len(rows),
                "value": [v for _, v in rows],
                "source": ["web"] * len(rows),
                "recorded_at": pa.array(range(1, len(rows) + 1), pa.timestamp("us", tz="UTC")),
            }
        ),
        lake / "consent_events" / "part-0.parquet",
    )


def test_an_import_publishes_the_accounts_whose_last_imported_choice_is_a_deny(
    database: Database, ctx: ConsentContext, heard: list[dict[str, list[int]]], tmp_path: Path
) -> None:
    write_import(tmp_path / "lake", [(1, "deny"), (2, "deny"), (2, "allow"), (3, "allow"), (3, "deny")])
    with database.write() as session:
        import_events(session, tmp_path / "lake", ctx=ctx)
    assert heard == [{"third_party_sharing": [1, 3]}]


def test_an_import_with_an_opt_out_is_refused_without_a_subscriber(
    database: Database, ctx: ConsentContext, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_import(tmp_path / "lake", [(1, "allow"), (2, "deny")])
    monkeypatch.setattr(events, "_subscribers", [])
    with pytest.raises(IntegrityFailure), database.write() as session:
        import_events(session, tmp_path / "lake", ctx=ctx)
    assert ledger_size(database) == 0
