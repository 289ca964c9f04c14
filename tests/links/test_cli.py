"""The operator's link import from the command line: all or nothing, bad lines named."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from consentry.config import Settings
from consentry.db import Database
from tests.conftest import make_account
from tests.test_cli import env, run

__all__ = ["env"]  # the fixture, shared with the CLI's own tests


def links(database: Database) -> int:
    with database.read() as session:
        return int(session.execute(sa.text("SELECT count(*) FROM account_links")).scalar_one())


def test_link_import_and_a_linked_change(env: Settings, database: Database, tmp_path: Path) -> None:
    a, _ = make_account(database, handle="a")
    b, _ = make_account(database, handle="b")
    c, _ = make_account(database, handle="c", country="DE")
    file = tmp_path / "links.csv"

    file.write_text(f"account_id,linked_account_id\n{a},{b}\n{a},{a}\n{c},999999\nx,1\n")
    code, out = run("account", "link-import", str(file))
    assert code == 2, out
    assert "line 5" in out and links(database) == 0
    file.write_text(f"account_id,linked_account_id\n{a},{b}\n{a},{a}\n{c},999999\n")
    code, out = run("account", "link-import", str(file))
    assert code == 2 and "line 3 linked_account_id: an account cannot be linked with itself" in out, out
    assert "line 4 linked_account_id: account 999999 does not exist" in out
    assert links(database) == 0
    file.write_text("who,whom\n1,2\n")
    code, out = run("account", "link-import", str(file))
    assert code == 2 and "header" in out

    file.write_text(f"account_id,linked_account_id\n{a},{b}\n{c},{a}\n")
    code, out = run("account", "link-import", str(file))
    assert code == 0 and "linked 2 new pairs" in out, out
    code, out = run("account", "link-import", str(file))
    assert code == 2 and "already linked" in out
    code, out = run("account", "links", str(a))
    assert code == 0
    assert sorted(link["account_id"] for link in json.loads(out)) == [b, c]
    code, out = run("account", "links", "999999")
    assert code == 1 and "does not exist" in out

    code, out = run("settings", "set", str(a), "assistant_realtime=deny", "--scope", "linked")
    assert code == 0 and out.count("seq ") == 3, out
    code, out = run("settings", "set", str(a), "assistant_realtime=deny", "--scope", "everyone")
    assert code == 2 and "scope" in out
