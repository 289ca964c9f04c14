"""The ``consentry`` command end to end: a newcomer's path and an admin's tampering, caught."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from consentry.cli import app
from consentry.config import Settings, get_settings
from consentry.db import Database
from tests.conftest import reset

runner = CliRunner()


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("CONSENTRY_HOME", str(settings.home))
    monkeypatch.setenv("CONSENTRY_DATABASE_URL", settings.database_url or "")
    get_settings.cache_clear()
    yield settings  # type: ignore[misc]
    get_settings.cache_clear()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes is not None else "")


def test_account_settings_receipt_ledger(env: Settings, database: Database, tmp_path: Path) -> None:
    code, out = run("account", "create", "ada", "--country", "US", "--birth-year", "1990")
    assert code == 0, out
    account_id = json.loads(out)["id"]
    code, out = run("token", "create", "--account", str(account_id), "--client", "ios")
    assert code == 0 and out.strip().startswith("cst_")

    receipts = tmp_path / "receipts"
    code, out = run(
        "settings",
        "set",
        str(account_id),
        "assistant_training_posts=deny",
        "--client",
        "ios",
        "--receipt-dir",
        str(receipts),
    )
    assert code == 0, out
    [receipt_file] = receipts.iterdir()
    code, out = run("receipt", "verify", str(receipt_file))
    assert code == 0 and "valid" in out

    forged = json.loads(receipt_file.read_text())
    forged["receipt"]["event"]["value"] = "allow"
    receipt_file.write_text(json.dumps(forged))
    code, out = run("receipt", "verify", str(receipt_file))
    assert code == 1 and "signature" in out

    code, out = run("settings", "show", str(account_id))
    assert code == 0 and "explicit" in out

    code, out = run("ledger", "verify")
    assert code == 0 and "intact" in out and "leaves matches the events" in out
    with database.write() as session:
        head = session.execute(sa.text("SELECT seq, hash FROM ledger_head")).one()
        session.execute(sa.text("UPDATE ledger_head SET hash = :h"), {"h": "ab" * 32})
    code, out = run("ledger", "verify")
    said = " ".join(out.split())
    assert (
        code == 1 and f"ledger broken at the head: the head names hash {'ab' * 32} for seq {head[0]}" in said
    )
    assert f"seq {head[0] + 1}" not in said
    with database.write() as session:
        session.execute(sa.text("UPDATE ledger_head SET hash = :h"), {"h": head[1]})
        session.execute(sa.text("UPDATE consent_events SET client = 'web' WHERE seq = 1"))
    code, out = run("ledger", "verify")
    assert code == 1 and "seq 1" in out


def test_ledger_partitions_are_set_once(env: Settings, database: Database) -> None:
    code, out = run("ledger", "partitions")
    assert code == 0 and "1 partition(s)" in out
    code, out = run("ledger", "partitions", "--set", "0")
    assert code != 0 and "partitions" in out
    code, out = run("ledger", "partitions", "--set", "4")
    assert code == 0 and "4 partition(s)" in out and "partition 3: 0 events" in out
    code, out = run("account", "create", "pat", "--country", "US", "--birth-year", "1990")
    account_id = json.loads(out)["id"]
    assert run("settings", "set", str(account_id), "third_party_sharing=deny")[0] == 0
    code, out = run("ledger", "partitions", "--set", "2")
    assert code != 0 and "fixed at creation" in " ".join(out.split())
    code, out = run("ledger", "verify")
    assert code == 0 and "intact" in out


def test_bad_input_exits_non_zero_and_changes_nothing(
    env: Settings, database: Database, tmp_path: Path
) -> None:
    code, out = run("account", "create", "bo", "--country", "USA")
    assert code == 2 and "country" in out
    code, out = run("settings", "set", "1", "assistant_training_posts=deny")
    assert code == 1 and "does not exist" in out
    code, out = run("account", "create", "bo", "--country", "FR", "--birth-year", "1980")
    account_id = json.loads(out)["id"]
    code, out = run("settings", "set", str(account_id), "assistant_training_posts=perhaps")
    assert code == 2 and "allow or deny" in out
    code, out = run("settings", "set", str(account_id), "nothing=deny")
    assert code == 2
    policy = tmp_path / "policy.json"
    policy.write_text(
        json.dumps(
            {
                "effective_at": "2001-01-01T00:00:00Z",
                "applies_to": "all",
                "title": "x",
                "defaults": {"default": {"*": "allow"}},
            }
        )
    )
    code, out = run("policy", "add", str(policy))
    assert code == 2 and "future" in out
    policy.write_text("{broken")
    code, out = run("policy", "add", str(policy))
    assert code == 2
    code, out = run("token", "create")
    assert code != 0
    with database.read() as session:
        assert session.execute(sa.text("SELECT count(*) FROM consent_events")).scalar_one() == 0
        assert session.execute(sa.text("SELECT count(*) FROM policy_versions")).scalar_one() == 1


def test_policy_add_and_list(env: Settings, database: Database, tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(
        json.dumps(
            {
                "effective_at": "2099-01-01T00:00:00Z",
                "applies_to": "new_accounts",
                "title": "Opt-in for new accounts",
                "defaults": {"default": {"*": "deny"}},
            }
        )
    )
    code, out = run("policy", "add", str(policy))
    assert code == 0 and '"version": 2' in out
    code, out = run("policy", "list")
    assert code == 0 and "Opt-in for new accounts" in out


def _seeded_already(database: Database) -> None:
    """A post in the database, so the demo keeps what is there instead of generating a platform."""
    from consentry.social.service import create_account, create_post

    with database.write() as session:
        author = create_account(session, handle="someone", country="US", birth_year=1980)
        create_post(session, author_id=author.id, text="already here")


def test_demo_prints_lines_for_its_real_port_that_the_shell_can_run(
    env: Settings, database: Database
) -> None:
    """Issue 19 items 3, 6, 7, 10: the port given, runnable commands, the export inside the data folder,
    and lines written whole when the output is not a terminal."""
    _seeded_already(database)
    code, out = run("demo", "--port", "8123", "--no-serve")
    assert code == 0, out
    assert ":8000" not in out
    lines = out.splitlines()
    assert "Settings page: http://127.0.0.1:8123/settings   (sign in with an account token below)" in lines
    assert any(line.startswith("curl -s -X POST http://127.0.0.1:8123/v1/platform/posts ") for line in lines)
    [export] = [line for line in lines if " platform export " in line]
    command = export.split(" platform export ")[0]
    assert shutil.which(command) is not None or Path(command).is_file(), command  # runnable as printed
    lake = export.split(" platform export ")[1].split(" && ")[0]
    assert Path(lake).absolute() == (env.home / "demo-lake").absolute()


def test_demo_on_a_busy_port_says_how_to_choose_another_before_seeding(
    env: Settings, database: Database
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out = run("demo", "--port", str(port))
    assert code == 1
    assert f"make demo PORT={port + 1}" in out and f"consentry demo --port {port + 1}" in out
    assert "Admin token" not in out
    with database.read() as session:
        assert session.scalar(sa.text("SELECT count(*) FROM accounts")) == 0


def test_after_a_lake_only_import_an_imported_accounts_settings_can_change(
    env: Settings, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19 item 12, and the way out for a ledger imported before imports created accounts."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from consentry.consent import importer
    from consentry.lake.generate import generate_lake

    lake = tmp_path / "lake"
    generate_lake(lake, accounts=60, posts=60, seed=5)
    accounts = ds.dataset(lake / "accounts").to_table(columns=["account_id", "status"])
    owners = ds.dataset(lake / "consent_events").to_table(columns=["account_id"])["account_id"].unique()
    named = accounts.filter(pc.is_in(accounts["account_id"], value_set=owners))
    [one, other] = named.filter(pc.equal(named["status"], "active"))["account_id"].to_pylist()[:2]

    # as an import did before it created accounts: events and subjects, no account rows
    creates_accounts = importer._create_accounts
    monkeypatch.setattr(importer, "_create_accounts", lambda session, accounts, named: 0)
    code, out = run("ledger", "import", str(lake))
    assert code == 0, out
    code, out = run("settings", "set", str(one), "assistant_realtime=deny")
    assert code == 1
    assert f"account {one} does not exist" in out
    assert "consentry ledger import LAKE --accounts-only" in out
    monkeypatch.setattr(importer, "_create_accounts", creates_accounts)
    code, out = run("ledger", "import", str(lake), "--accounts-only")
    assert code == 0 and f"created {named.num_rows} accounts; no events were imported" in out, out
    code, out = run("settings", "set", str(one), "assistant_realtime=deny")
    assert code == 0 and "assistant_realtime = deny" in out, out

    # a fresh database: the import alone is enough
    reset(database)
    code, out = run("ledger", "import", str(lake))
    assert code == 0 and f"{named.num_rows} new accounts" in out, out
    code, out = run("settings", "set", str(other), "assistant_training_posts=deny")
    assert code == 0 and "assistant_training_posts = deny" in out, out
