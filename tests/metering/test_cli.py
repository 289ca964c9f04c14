"""``consentry org ...`` and ``consentry damages ...`` against a real database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consentry.config import get_settings
from consentry.db import Database
from consentry.metering import service
from consentry.metering.cli import app
from tests.metering.test_damages import EXAMPLE

runner = CliRunner()


@pytest.fixture
def cli_database(database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    monkeypatch.setenv("CONSENTRY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CONSENTRY_DATABASE_URL", database.url)
    get_settings.cache_clear()
    yield database
    get_settings.cache_clear()


def test_org_commands(cli_database: Database) -> None:
    added = runner.invoke(app, ["org", "add", "Example Labs", "--mode", "throttle", "--quota", "5000"])
    assert added.exit_code == 0, added.output
    assert "mode throttle" in added.output
    key = runner.invoke(app, ["org", "key-create", "Example Labs", "--label", "fleet"])
    assert key.exit_code == 0 and "cso_" in key.output
    assert runner.invoke(app, ["org", "cidr-add", "Example Labs", "198.51.100.0/24"]).exit_code == 0
    paid = runner.invoke(
        app, ["org", "set-mode", "Example Labs", "pay", "--price-usd", "0.0015", "--no-quota"]
    )
    assert paid.exit_code == 0, paid.output
    listed = runner.invoke(app, ["org", "list", "--json"])
    [org] = json.loads(listed.output)
    assert (org["mode"], org["quota"], org["price_micro_usd"]) == ("pay", None, 1500)
    assert org["networks"][0]["cidr"] == "198.51.100.0/24" and len(org["keys"]) == 1
    assert runner.invoke(app, ["org", "key-revoke", str(org["keys"][0]["id"])]).exit_code == 0
    assert runner.invoke(app, ["org", "cidr-remove", str(org["networks"][0]["id"])]).exit_code == 0
    assert "revoked" in runner.invoke(app, ["org", "show", "Example Labs"]).output
    assert runner.invoke(app, ["org", "crawlers"]).exit_code == 0
    assert runner.invoke(app, ["org", "delete", "Example Labs"]).exit_code == 0


def test_org_errors_exit_non_zero(cli_database: Database, tmp_path: Path) -> None:
    runner.invoke(app, ["org", "add", "Known"])
    cases = [
        ["org", "add", "Known"],
        ["org", "add", "Other", "--mode", "free"],
        ["org", "add", "Other", "--mode", "pay"],
        ["org", "add", "Other", "--quota", "-5"],
        ["org", "cidr-add", "Known", "10.0.0.0/40"],
        ["org", "set-mode", "Nobody", "block"],
        ["org", "set-mode", "Known", "pay", "--price-usd", "cheap"],
        ["org", "key-revoke", "12345"],
    ]
    for args in cases:
        result = runner.invoke(app, args)
        assert result.exit_code != 0, args
        assert "error:" in result.output, args
    bad_file = tmp_path / "crawlers.json"
    bad_file.write_text('[{"token": "XBot"}]')
    result = runner.invoke(app, ["org", "crawlers", "--file", str(bad_file)])
    assert result.exit_code == 2 and "operator" in result.output


def test_damages_commands(cli_database: Database, tmp_path: Path) -> None:
    with cli_database.write() as session:
        org_id = service.create_organisation(session, name="Scraper Inc").id
        service.append_access_log(
            session,
            events=[
                service.AccessEvent(
                    f"org:{org_id}",
                    datetime.fromisoformat(at).replace(tzinfo=UTC),
                    posts,
                    org_id,
                    "/v1/posts",
                    "192.0.2.1",
                    basis="network",
                )
                for at, posts in EXAMPLE
            ],
        )
    period = ["--from", "2026-11-01", "--to", "2026-12-01T00:00:00Z"]
    as_json = runner.invoke(app, ["damages", "statement", "Scraper Inc", *period])
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.output)
    assert [w["posts"] for w in body["windows"]] == [1_100_000, 1_150_000]
    assert body["total_amount_cents"] == 3_375_000
    hours = body["windows"][0]["hours"]  # each hour of evidence says how its posts were attributed
    assert all(set(hour["bases"]) <= {"network"} for hour in hours)
    assert sum(hour["bases"].get("network", 0) for hour in hours) == 1_100_000
    per_million = runner.invoke(
        app,
        [
            "damages",
            "statement",
            str(org_id),
            *period,
            "--rounding",
            "per_started_million",
            "--rate-usd",
            "20000",
        ],
    )
    assert json.loads(per_million.output)["total_amount_cents"] == 8_000_000
    as_csv = runner.invoke(app, ["damages", "statement", "Scraper Inc", *period, "--format", "csv"])
    assert as_csv.output.splitlines()[0].startswith("organisation,window,window_start")
    assert as_csv.output.splitlines()[0].endswith(",hour_bases")
    assert any(
        line.endswith(",network=") is False and ",network=" in line for line in as_csv.output.splitlines()
    )
    out = tmp_path / "statement.html"
    as_html = runner.invoke(
        app, ["damages", "statement", "Scraper Inc", *period, "--format", "html", "--output", str(out)]
    )
    assert as_html.exit_code == 0 and "33,750.00" in out.read_text()
    assert "Posts by attribution basis" in out.read_text() and "network=" in out.read_text()
    top = runner.invoke(app, ["damages", "top", "--at", "2026-11-02T08:30:00Z", "--json"])
    assert json.loads(top.output)["entries"][0]["posts_24h"] == 1_000_000
    as_table = runner.invoke(app, ["damages", "top", "--at", "2026-11-02T08:30:00Z"])
    assert as_table.exit_code == 0
    # written to a pipe, the table is not narrowed to 80 columns: every subject appears whole
    assert all(entry["subject"] in as_table.output for entry in json.loads(top.output)["entries"])
    assert "…" not in as_table.output

    for args in (
        ["damages", "statement", "Nobody", *period],
        ["damages", "statement", "Scraper Inc", "--from", "2026-12-01", "--to", "2026-11-01"],
        ["damages", "statement", "Scraper Inc", "--from", "2026-01-01", "--to", "2027-06-01"],
        ["damages", "statement", "Scraper Inc", "--from", "yesterday", "--to", "2026-11-01"],
        ["damages", "statement", "Scraper Inc", *period, "--format", "pdf"],
        ["damages", "statement", "Scraper Inc", *period, "--rate-usd", "0.001"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code != 0, args
        assert "error:" in result.output, args


def test_bot_identity_commands(cli_database: Database, tmp_path: Path) -> None:
    from tests.metering.test_webbotauth import RFC_JWK, RFC_THUMBPRINT, DirectoryServer

    assert runner.invoke(app, ["org", "add", "Crawler Co"]).exit_code == 0
    server = DirectoryServer()
    try:
        added = runner.invoke(app, ["org", "bot-add", "Crawler Co", server.origin])
        assert added.exit_code == 0, added.output
        assert "keys from" in added.output
        first = added.output.split("bot identity ")[1].split(":")[0]
        pinned = runner.invoke(app, ["org", "bot-pin", first])  # fetched once, now, and pinned
        assert pinned.exit_code == 0, pinned.output
        assert RFC_THUMBPRINT in pinned.output and server.hits == 1
    finally:
        server.close()
    jwks = tmp_path / "keys.json"
    jwks.write_text(json.dumps({"keys": [RFC_JWK]}))
    other = runner.invoke(
        app, ["org", "bot-add", "Crawler Co", "https://crawler.example", "--jwks", str(jwks)]
    )
    assert other.exit_code == 0 and "pinned keys" in other.output
    second = other.output.split("bot identity ")[1].split(":")[0]
    assert runner.invoke(app, ["org", "bot-unpin", first]).exit_code == 0
    listed = runner.invoke(app, ["org", "bot-list"])
    assert listed.exit_code == 0 and "https://crawler.example" in listed.output
    shown = runner.invoke(app, ["org", "show", "Crawler Co"])
    assert f"bot identity {second}: https://crawler.example (pinned keys)" in shown.output
    # bad input: a message and a non-zero exit, nothing stored
    for args in (
        ["org", "bot-add", "Crawler Co", "not-an-origin"],
        ["org", "bot-add", "Crawler Co", "https://crawler.example"],  # already registered
        ["org", "bot-add", "Nobody", "https://x.example"],
        ["org", "bot-add", "Crawler Co", "https://y.example", "--jwks", str(tmp_path / "missing.json")],
        ["org", "bot-pin", first],  # its directory is gone: unfetchable
        ["org", "bot-remove", "999999"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code != 0, args
    assert runner.invoke(app, ["org", "bot-remove", second]).exit_code == 0
    listed = runner.invoke(app, ["org", "bot-list"])
    assert "https://crawler.example" not in listed.output
