"""``consentry recipient ...`` and ``consentry dataset ...`` against a real database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from consentry.config import get_settings
from consentry.consent.importer import import_events
from consentry.consent.service import ConsentContext
from consentry.datasets.cli import dataset_app, recipient_app
from consentry.db import Database

runner = CliRunner()
app = typer.Typer()
app.add_typer(recipient_app, name="recipient")
app.add_typer(dataset_app, name="dataset")


@pytest.fixture
def cli_database(
    database: Database,
    ctx: ConsentContext,
    scenario_lake: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Database]:
    monkeypatch.setenv("CONSENTRY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CONSENTRY_DATABASE_URL", database.url)
    get_settings.cache_clear()
    with database.write() as session:
        import_events(session, scenario_lake, ctx=ctx)
    yield database
    get_settings.cache_clear()


def test_recipient_and_dataset_commands(cli_database: Database, scenario_lake: Path, tmp_path: Path) -> None:
    added = runner.invoke(
        app,
        [
            "recipient",
            "add",
            "partner",
            "--kind",
            "third_party",
            "--categories",
            "posts,assistant_interactions",
        ],
    )
    assert added.exit_code == 0, added.output
    assert "partner" in runner.invoke(app, ["recipient", "list"]).output
    out = tmp_path / "release"
    arguments = ["dataset", "build", "--recipient", "partner", "--lake", str(scenario_lake)]
    built = runner.invoke(
        app,
        [
            *arguments,
            "--out",
            str(out),
            "--categories",
            "posts",
            "--as-of",
            "2026-06-01",
            "--retain",
            "posts=365",
        ],
    )
    assert built.exit_code == 0, built.output
    assert "published" in built.output and "outside_retention" in built.output
    release_id = json.loads((out / "manifest.json").read_text())["release_id"]
    assert release_id in runner.invoke(app, ["dataset", "list"]).output
    shown = runner.invoke(app, ["dataset", "show", release_id, "--json"])
    assert shown.exit_code == 0 and json.loads(shown.output)["recipient"]["name"] == "partner"
    assert "opted_out" in runner.invoke(app, ["dataset", "show", release_id]).output
    verified = runner.invoke(app, ["dataset", "verify", release_id])
    assert verified.exit_code == 0 and "match the manifest" in verified.output
    (out / "README.md").write_text("changed")
    tampered = runner.invoke(app, ["dataset", "verify", release_id])
    assert tampered.exit_code == 1 and "README.md" in tampered.output

    for extra, code, message in (
        (["--out", str(out)], 1, "already holds a release"),
        (
            ["--out", str(tmp_path / "a"), "--since", "2026-05-01", "--until", "2026-04-01"],
            2,
            "before --until",
        ),
        (["--out", str(tmp_path / "b"), "--categories", "profile"], 2, "unknown category"),
        (["--out", str(tmp_path / "c"), "--purpose", "mining"], 2, "unknown purpose"),
        (["--out", str(tmp_path / "d"), "--retain", "posts=soon"], 2, "whole number"),
    ):
        result = runner.invoke(app, [*arguments, *extra])
        assert result.exit_code == code, result.output
        assert message in result.output
    unknown = runner.invoke(
        app,
        [
            "dataset",
            "build",
            "--recipient",
            "nobody",
            "--lake",
            str(scenario_lake),
            "--out",
            str(tmp_path / "e"),
        ],
    )
    assert unknown.exit_code == 1 and "unknown recipient" in unknown.output
    assert not any((tmp_path / name).exists() for name in "abcde")
    assert runner.invoke(app, ["dataset", "show", "rel-missing"]).exit_code == 1
