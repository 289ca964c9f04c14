"""Accounts: deletion makes ledger events anonymous while the chain still verifies."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from consentry.auth.service import resolve_token
from consentry.consent import ledger, service
from consentry.consent.service import ConsentContext
from consentry.db import Database
from consentry.errors import Conflict, InvalidInput, Unauthenticated
from consentry.social.service import create_account, deactivate_account, delete_account
from tests.conftest import make_account


def test_deleting_an_account_anonymises_its_events(database: Database, ctx: ConsentContext) -> None:
    account_id, token = make_account(database)
    with database.write() as session:
        service.change_settings(
            session, account_id=account_id, changes={"assistant_realtime": "deny"}, client="web", ctx=ctx
        )
    with database.write() as session:
        delete_account(session, account_id=account_id)
    with database.read() as session:
        assert ledger.subject_key_for(session, account_id, create=False) is None
        assert session.execute(sa.text("SELECT count(*) FROM consent_events")).scalar_one() == 1
        assert ledger.verify(session).ok
        assert service.history(session, account_id=account_id) == []
        with pytest.raises(Unauthenticated):
            resolve_token(session, token)
        states = service.settings_view(session, account_id=account_id, ctx=ctx)
        assert {s.value for s in states} == {"deny"} and {s.basis for s in states} == {"inactive"}


def test_inactive_accounts_cannot_change_settings(database: Database, ctx: ConsentContext) -> None:
    account_id, _ = make_account(database)
    with database.write() as session:
        deactivate_account(session, account_id=account_id)
    with pytest.raises(Conflict), database.write() as session:
        service.change_settings(
            session, account_id=account_id, changes={"assistant_realtime": "deny"}, client="web", ctx=ctx
        )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"handle": "a b"}, "handle"), ({"country": "USA"}, "country"), ({"birth_year": 1800}, "birth_year")],
)
def test_account_input_is_validated(database: Database, kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"handle": "ok", "country": "US", "birth_year": 1990, **kwargs}
    with pytest.raises(InvalidInput) as error, database.write() as session:
        create_account(session, **args)  # type: ignore[arg-type]
    assert error.value.field == field
