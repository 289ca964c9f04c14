"""Models and migrations agree, on SQLite and on PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from consentry.db import Database
from consentry.migrate import check, upgrade


def test_models_and_migrations_agree(database: Database) -> None:
    check(database)  # raises IntegrityFailure on any drift


def test_upgrade_is_idempotent_and_seeds_the_starting_policy(database: Database) -> None:
    upgrade(database)
    with database.read() as session:
        version, applies_to, defaults = session.execute(
            sa.text("SELECT version, applies_to, defaults FROM policy_versions WHERE version = 1")
        ).one()
        head = session.execute(sa.text("SELECT seq, hash FROM ledger_head")).all()
    assert (version, applies_to) == (1, "all")
    assert head == [(0, "0" * 64)]
    parsed = defaults if isinstance(defaults, dict) else __import__("json").loads(defaults)
    assert parsed["default"] == {"*": "allow"}
    assert {parsed[g]["*"] for g in ("EEA", "UK", "CH")} == {"deny"}
