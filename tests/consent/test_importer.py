"""Bulk import of a lake's consent events: chain intact, same decisions as the lake, all or nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from consentry.consent import importer, ledger, service
from consentry.consent.evaluate import evaluate_many
from consentry.consent.service import ConsentContext
from consentry.db import Database
from consentry.errors import Conflict, InvalidInput
from consentry.lake.generate import generate_lake
from consentry.migrate import check
from consentry.social.models import Account
from consentry.social.service import create_account


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lake") / "lake"
    generate_lake(path, accounts=1500, posts=3000, seed=11)
    return path


@pytest.mark.parametrize("rebuild_at", [10, 10**9])
def test_import_keeps_every_decision_of_the_lake(
    database: Database, ctx: ConsentContext, lake: Path, rebuild_at: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger.bulk, "REBUILD_INDEX_AT", rebuild_at)  # both the rebuilt-index and plain paths
    with database.write() as session:
        report = importer.import_events(session, lake, ctx=ctx)
    lake_events = ds.dataset(lake / "consent_events").to_table()
    assert report.events == lake_events.num_rows > 1000
    with database.read() as session:
        verified = ledger.verify(session)
        stored = service.events_table(session)
        gpc = session.execute(
            sa.text("SELECT DISTINCT client FROM consent_events WHERE source = 'gpc'")
        ).all()
        policies = service.load_policies(session)
    assert verified.ok and verified.events == report.events
    assert gpc == [("web",)]
    check(database)  # the subject index is back after a rebuild

    accounts = ds.dataset(lake / "accounts").to_table(
        columns=["account_id", "created_at", "country", "birth_year", "status", "status_changed_at"]
    )
    as_lake = lake_events.select(["account_id", "setting", "value", "recorded_at"]).append_column(
        "seq", pa.array(range(lake_events.num_rows), pa.int64())
    )
    at = datetime(2026, 11, 2, tzinfo=UTC)
    args = {"settings": ctx.catalog.keys, "at": at, "policies": policies, "jurisdictions": ctx.jurisdictions}
    from_lake = evaluate_many(accounts, as_lake, **args)  # type: ignore[arg-type]
    from_ledger = evaluate_many(accounts, stored, **args)  # type: ignore[arg-type]
    assert from_lake.equals(from_ledger)


def test_a_bad_lake_writes_nothing(
    database: Database, ctx: ConsentContext, lake: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    (broken / "consent_events").mkdir(parents=True)
    (broken / "accounts").symlink_to(lake / "accounts")
    events = ds.dataset(lake / "consent_events").to_table()
    values = events["value"].to_pylist()
    values[-1] = "perhaps"
    pq.write_table(
        events.set_column(events.schema.get_field_index("value"), "value", pa.array(values)),
        broken / "consent_events" / "part-0.parquet",
    )
    with pytest.raises(InvalidInput) as error, database.write() as session:
        importer.import_events(session, broken, ctx=ctx)
    assert error.value.field == "consent_events.value"
    with pytest.raises(InvalidInput), database.write() as session:
        importer.import_events(session, tmp_path / "missing", ctx=ctx)
    with database.read() as session:
        assert ledger.verify(session).events == 0
        assert session.execute(sa.text("SELECT count(*) FROM consent_subjects")).scalar_one() == 0


def named_accounts(lake: Path) -> pa.Table:
    """The lake's accounts that its consent events name, in account_id order."""
    owners = ds.dataset(lake / "consent_events").to_table(columns=["account_id"])["account_id"]
    accounts = ds.dataset(lake / "accounts").to_table()
    return accounts.filter(pa.compute.is_in(accounts["account_id"], value_set=owners.unique())).sort_by(
        "account_id"
    )


def test_import_creates_the_accounts_it_names_so_their_settings_can_change(
    database: Database, ctx: ConsentContext, lake: Path
) -> None:
    """Issue 19 item 12: after a lake-only import, an imported account's settings can change; accounts
    already in the database keep their rows."""
    named = named_accounts(lake)
    first = named.slice(0, 1).to_pylist()[0]
    with database.write() as session:  # an account the database already has, under the lake's id
        session.add(
            Account(id=first["account_id"], handle="kept", created_at=first["created_at"], country="FR")
        )
    with database.write() as session:
        report = importer.import_events(session, lake, ctx=ctx)
    assert report.new_accounts == named.num_rows - 1 > 100
    with database.read() as session:
        assert session.scalar(sa.text("SELECT count(*) FROM accounts")) == named.num_rows
        kept = session.execute(
            sa.text("SELECT handle, country FROM accounts WHERE id = :id"), {"id": first["account_id"]}
        ).one()
        assert tuple(kept) == ("kept", "FR")
        copied = session.execute(
            sa.text("SELECT handle, country, status FROM accounts WHERE id = :id"),
            {"id": named["account_id"][-1].as_py()},
        ).one()
    last = named.slice(named.num_rows - 1).to_pylist()[0]
    assert tuple(copied) == (last["handle"], last["country"], last["status"])  # as the lake says
    active = named.filter(pa.compute.equal(named["status"], "active"))
    account_id = active["account_id"][-1].as_py()
    with database.write() as session:
        [signed] = service.change_settings(
            session, account_id=account_id, changes={"assistant_realtime": "deny"}, client="api", ctx=ctx
        )
    assert signed["receipt"]["event"]["value"] == "deny"
    with database.write() as session:  # a second import appends events but creates no account twice
        assert importer.import_events(session, lake, ctx=ctx).new_accounts == 0
    with database.write() as session:  # an account created later gets the next free id
        created = session.execute(sa.text("SELECT max(id) FROM accounts")).scalar_one()
        assert create_account(session, handle="newcomer", country="US", birth_year=1990).id > created


def test_a_handle_taken_by_another_account_fails_the_import_and_writes_nothing(
    database: Database, ctx: ConsentContext, lake: Path
) -> None:
    handle = named_accounts(lake)["handle"][3].as_py()
    with database.write() as session:
        session.add(
            Account(id=999_999, handle=handle, created_at=datetime(2026, 1, 1, tzinfo=UTC), country="FR")
        )
    with pytest.raises(Conflict) as error, database.write() as session:
        importer.import_events(session, lake, ctx=ctx)
    assert error.value.field == "accounts.handle" and handle in error.value.detail
    with database.read() as session:
        assert ledger.verify(session).events == 0
        assert session.scalar(sa.text("SELECT count(*) FROM accounts")) == 1
