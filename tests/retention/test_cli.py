"""``consentry retention ...`` against a real database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from tests.retention.conftest import AT, seed
from typer.testing import CliRunner

from consentry.cli import app
from consentry.config import get_settings
from consentry.db import Database
from consentry.lake.generate import generate_lake
from consentry.retention.models import LegalHold, RetentionRun
from consentry.social.models import Post

runner = CliRunner()


@pytest.fixture
def cli_database(database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    monkeypatch.setenv("CONSENTRY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CONSENTRY_DATABASE_URL", database.url)
    monkeypatch.delenv("CONSENTRY_RETENTION_FILE", raising=False)
    get_settings.cache_clear()
    seed(database)
    yield database
    get_settings.cache_clear()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["retention", *args])
    return result.exit_code, result.output


def test_plan_apply_and_runs(cli_database: Database, tmp_path: Path) -> None:
    code, out = invoke("plan", "--at", AT.isoformat(), "--json")
    assert code == 0, out
    plan = json.loads(out)
    assert plan["source"] == "database"
    posts = next(o for o in plan["outcomes"] if o["rule"] == "posts")
    assert posts["removed"] == {"posts": 5, "likes": 3, "reposts": 1}
    code, out = invoke("plan", "--at", AT.isoformat())
    assert code == 0 and "dry run" in out and "would remove 32 rows" in out
    with cli_database.read() as session:
        assert session.scalar(select(func.count()).select_from(Post)) == 15  # the plan removed nothing

    report = tmp_path / "reports" / "purge.json"
    code, out = invoke("apply", "--at", AT.isoformat(), "--report", str(report))
    assert code == 0, out
    assert "removed 32 rows" in out and f"report written to {report}" in out
    written = json.loads(report.read_text())
    assert written["status"] == "finished" and written["rows_removed"] == 32
    with cli_database.read() as session:
        assert session.scalar(select(func.count()).select_from(Post)) == 7
        assert session.scalar(select(func.count()).select_from(RetentionRun)) == 1
    code, out = invoke("runs", "--json")
    assert code == 0 and json.loads(out)[0]["rows_removed"] == 32
    code, out = invoke("apply", "--at", AT.isoformat(), "--json")
    assert code == 0 and json.loads(out)["rows_removed"] == 0
    assert invoke("runs")[0] == 0


def test_rules_and_bad_rules_files(
    cli_database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = invoke("rules", "--json")
    assert code == 0 and json.loads(out)["access_log"] == {"max_age": "P18M"}
    assert "P30D after deletion" in invoke("rules")[1]
    bad = tmp_path / "retention.json"
    bad.write_text(json.dumps({"posts": {"after_deletion": "-P30D"}}))
    monkeypatch.setenv("CONSENTRY_RETENTION_FILE", str(bad))
    get_settings.cache_clear()
    for command in (["rules"], ["plan"], ["apply", "--at", AT.isoformat()]):
        code, out = invoke(*command)
        assert code == 2, (command, out)
        assert "retention.posts.after_deletion" in out and "negative" in out
    bad.write_text(json.dumps({"access_log": {"max_age": "18 months"}}))
    code, out = invoke("apply", "--at", AT.isoformat())
    assert code == 2 and "retention.access_log.max_age" in out
    with cli_database.read() as session:
        assert session.scalar(select(func.count()).select_from(Post)) == 15
        assert session.scalar(select(func.count()).select_from(RetentionRun)) == 0
    code, out = invoke("plan", "--at", "yesterday-ish")
    assert code == 2 and "(at)" in out
    code, out = invoke("apply", "--at", "2999-01-01")
    assert code == 2


def test_holds(cli_database: Database) -> None:
    code, out = invoke("hold", "add", "2", "--reason", "litigation 2026-17", "--by", "counsel")
    assert code == 0 and "account 2: legal hold since" in out and "active" in out
    code, out = invoke("hold", "add", "999", "--reason", "x")
    assert code == 1 and "account 999 does not exist" in out and "(account_id)" in out
    code, out = invoke("hold", "add", "2", "--reason", "again")
    assert code == 1 and "already on legal hold" in out
    code, out = invoke("hold", "list", "--json")
    [held] = json.loads(out)
    assert (held["account_id"], held["reason"], held["created_by"]) == (2, "litigation 2026-17", "counsel")
    plan = json.loads(invoke("plan", "--at", AT.isoformat(), "--json")[1])
    assert plan["holds"] == 1
    assert next(o for o in plan["outcomes"] if o["rule"] == "posts")["held"] == {"posts": 1}
    code, out = invoke("hold", "release", "2")
    assert code == 0 and "released" in out
    code, out = invoke("hold", "release", "2")
    assert code == 1 and "no active legal hold" in out
    assert invoke("hold", "list")[1].strip() == "no legal holds"
    assert len(json.loads(invoke("hold", "list", "--all", "--json")[1])) == 1
    with cli_database.read() as session:
        assert session.scalar(select(func.count()).select_from(LegalHold)) == 1


def test_plan_over_a_lake_uses_the_database_s_holds(cli_database: Database, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    generate_lake(lake, accounts=300, posts=3000, seed=5)
    code, out = invoke("plan", "--lake", str(lake), "--at", "2026-11-01", "--json")
    assert code == 0, out
    plan = json.loads(out)
    assert plan["source"] == "lake" and plan["lake"] == str(lake)
    assert invoke("hold", "add", "1", "--reason", "r")[0] == 0
    code, out = invoke("plan", "--lake", str(lake), "--at", "2026-11-01")
    assert code == 0 and "retention plan over lake" in out and "1 account(s) on legal hold" in out
    code, out = invoke("plan", "--lake", str(tmp_path / "nowhere"))
    assert code == 2 and "(lake)" in out
