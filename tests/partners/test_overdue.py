"""Overdue revocations: the report (service, admin API, CLI) and the block on new releases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from consentry.api import create_app
from consentry.config import Settings, get_settings
from consentry.consent.service import ConsentContext
from consentry.datasets import service as datasets
from consentry.datasets.cli import dataset_app
from consentry.db import utcnow
from consentry.errors import Conflict
from consentry.job_handlers import job_runner
from consentry.partners import service
from consentry.partners.cli import partner_app
from tests.datasets.conftest import build
from tests.partners.conftest import A, B, World, add_revocation

runner = CliRunner()
cli = typer.Typer()
cli.add_typer(partner_app, name="partner")
cli.add_typer(dataset_app, name="dataset")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def overdue_world(world: World) -> dict[str, int]:
    """A's release: two overdue revocations, one acknowledged after its deadline, one not yet due."""
    now, release = utcnow(), world.releases[A]
    return {
        "late": add_revocation(
            world.database,
            release,
            record_ids=[101, 104],
            created_at=now - timedelta(hours=80),
            deadline_at=now - timedelta(hours=8),
        ),
        "later": add_revocation(
            world.database,
            release,
            record_ids=[106],
            created_at=now - timedelta(hours=75),
            deadline_at=now - timedelta(hours=3),
        ),
        "acknowledged": add_revocation(
            world.database, release, created_at=now - timedelta(hours=100), acknowledged=True
        ),
        "due": add_revocation(world.database, release, created_at=now - timedelta(hours=1)),
    }


def acknowledge(world: World, revocation_id: int) -> None:
    with world.database.write() as session:
        service.acknowledge(
            session,
            recipient_id=world.ids[A],
            revocation_id=revocation_id,
            deleted_at=utcnow() - timedelta(minutes=1),
            method="purge",
        )


# --- the report -------------------------------------------------------------------------------------


def test_the_report_lists_unacknowledged_revocations_past_their_deadline_per_partner(world: World) -> None:
    ids = overdue_world(world)
    with world.database.read() as session:
        report = service.overdue_report(session)
        detail = service.partner_detail(session, service.get_partner(session, A))
    (entry,) = report.partners
    assert entry.partner == A and entry.status == "active"
    assert entry.revocations == 2 and entry.records == 3
    assert entry.oldest_deadline < utcnow() - timedelta(hours=7)
    assert [(r.release, r.revocations, r.records) for r in entry.releases] == [(world.releases[A].id, 2, 3)]
    assert detail.revocations.model_dump() == {"pending": 1, "overdue": 2, "acknowledged": 1}
    # time moves on: the pending one becomes overdue too
    with world.database.read() as session:
        later = service.overdue_report(session, now=utcnow() + timedelta(hours=72))
    assert later.partners[0].revocations == 3
    acknowledge(world, ids["late"])
    acknowledge(world, ids["later"])
    with world.database.read() as session:
        assert service.overdue_report(session).partners == []


def test_partners_are_ordered_by_their_oldest_missed_deadline(world: World) -> None:
    now = utcnow()
    add_revocation(world.database, world.releases[A], deadline_at=now - timedelta(hours=1))
    add_revocation(world.database, world.releases[B], deadline_at=now - timedelta(hours=5))
    with world.database.read() as session:
        report = service.overdue_report(session)
        only_a = service.overdue_report(session, partner=A)
    assert [p.partner for p in report.partners] == [B, A]
    assert [p.partner for p in only_a.partners] == [A]


def test_the_admin_api_serves_the_report(client: TestClient, world: World, admin_token: str) -> None:
    overdue_world(world)
    response = client.get("/v1/admin/partners/overdue", headers=auth(admin_token))
    assert response.status_code == 200
    (entry,) = response.json()["partners"]
    assert entry["partner"] == A and entry["revocations"] == 2 and entry["records"] == 3
    only_b = client.get("/v1/admin/partners/overdue", params={"partner": B}, headers=auth(admin_token))
    assert only_b.json()["partners"] == []
    missing = client.get(
        "/v1/admin/partners/overdue", params={"partner": "nobody"}, headers=auth(admin_token)
    )
    assert missing.status_code == 404
    assert client.get("/v1/admin/partners/overdue", headers=world.auth(A)).status_code == 401
    shown = client.get(f"/v1/admin/partners/{A}", headers=auth(admin_token)).json()
    assert shown["revocations"] == {"pending": 1, "overdue": 2, "acknowledged": 1}


@pytest.fixture
def cli_env(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("CONSENTRY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CONSENTRY_DATABASE_URL", world.database.url)
    get_settings.cache_clear()
    yield world
    get_settings.cache_clear()


def test_the_cli_prints_the_report_as_a_table_or_json(cli_env: World) -> None:
    empty = runner.invoke(cli, ["partner", "overdue"])
    assert empty.exit_code == 0 and "no overdue revocations" in empty.output
    overdue_world(cli_env)
    table = runner.invoke(cli, ["partner", "overdue"])
    assert table.exit_code == 0, table.output
    assert A in table.output and cli_env.releases[A].id in table.output and B not in table.output
    as_json = runner.invoke(cli, ["partner", "overdue", "--json"])
    report = json.loads(as_json.output)
    assert [(p["partner"], p["revocations"], p["records"]) for p in report["partners"]] == [(A, 2, 3)]
    assert "2 overdue" in runner.invoke(cli, ["partner", "show", A]).output


# --- the release block ------------------------------------------------------------------------------


def request(world: World, tmp_path: Path, **options: Any) -> str:
    """``check_request`` for a new release to A; returns the recipient's name if it passes."""
    with world.database.read() as session:
        checked = datasets.check_request(
            session, recipient=A, purpose="train-ai", categories=["posts"], out=tmp_path / "next", **options
        )
        return checked.recipient.name


def test_a_partner_with_overdue_revocations_gets_no_new_release_until_it_acknowledges(
    world: World, ctx: ConsentContext, scenario_lake: Path, tmp_path: Path
) -> None:
    ids = overdue_world(world)
    with pytest.raises(Conflict) as refused:
        build(world.database, ctx, scenario_lake, tmp_path / "blocked", recipient=A)
    assert refused.value.field == "recipient" and "overdue" in refused.value.detail
    assert not (tmp_path / "blocked").exists()
    with pytest.raises(Conflict):
        request(world, tmp_path)
    assert request(world, tmp_path, block_when_overdue=False) == A
    # the other partner is not affected
    build(world.database, ctx, scenario_lake, tmp_path / "b-again", recipient=B)
    # a pending (not yet overdue) revocation does not block
    acknowledge(world, ids["late"])
    acknowledge(world, ids["later"])
    release = build(world.database, ctx, scenario_lake, tmp_path / "after", recipient=A)
    assert release.recipient_id == world.ids[A]


def test_the_block_can_be_switched_off(
    world: World, ctx: ConsentContext, scenario_lake: Path, tmp_path: Path
) -> None:
    overdue_world(world)
    release = build(
        world.database, ctx, scenario_lake, tmp_path / "anyway", recipient=A, block_when_overdue=False
    )
    assert release.recipient_id == world.ids[A]


def test_a_suspended_partner_gets_no_new_release_even_with_the_block_off(
    world: World, ctx: ConsentContext, scenario_lake: Path, tmp_path: Path
) -> None:
    with world.database.write() as session:
        service.set_status(session, name=A, status="suspended")
    for block in (True, False):
        with pytest.raises(Conflict) as refused:
            build(
                world.database,
                ctx,
                scenario_lake,
                tmp_path / f"s-{block}",
                recipient=A,
                block_when_overdue=block,
            )
        assert refused.value.field == "recipient" and "suspended" in refused.value.detail
    with world.database.write() as session:
        service.set_status(session, name=A, status="active")
    build(world.database, ctx, scenario_lake, tmp_path / "resumed", recipient=A)


def test_the_build_api_refuses_with_409_and_follows_the_setting(
    world: World, scenario_lake: Path, tmp_path: Path, admin_token: str, settings: Settings
) -> None:
    overdue_world(world)
    body = {
        "recipient": A,
        "purpose": "train-ai",
        "categories": ["posts"],
        "lake": str(scenario_lake),
        "as_of": "2026-06-01T00:00:00Z",
    }
    with TestClient(create_app(settings, database=world.database, migrate=False)) as blocking:
        refused = blocking.post(
            "/v1/admin/datasets/builds", json={**body, "out": str(tmp_path / "a")}, headers=auth(admin_token)
        )
    assert refused.status_code == 409 and refused.json()["field"] == "recipient"
    lenient = settings.model_copy(update={"block_releases_when_overdue": False})
    with TestClient(create_app(lenient, database=world.database, migrate=False)) as client:
        queued = client.post(
            "/v1/admin/datasets/builds", json={**body, "out": str(tmp_path / "b")}, headers=auth(admin_token)
        )
        assert queued.status_code == 202, queued.text
        assert job_runner(world.database, settings).run_once() == 1  # the API's setting travels with it
        job = client.get(f"/v1/admin/datasets/builds/{queued.json()['id']}", headers=auth(admin_token)).json()
    assert job["status"] == "succeeded", job


def test_the_build_cli_follows_the_setting(
    cli_env: World, scenario_lake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overdue_world(cli_env)
    arguments = ["dataset", "build", "--recipient", A, "--lake", str(scenario_lake), "--as-of", "2026-06-01"]
    refused = runner.invoke(cli, [*arguments, "--out", str(tmp_path / "a")])
    assert refused.exit_code == 1 and "overdue" in refused.output and "(recipient)" in refused.output
    monkeypatch.setenv("CONSENTRY_BLOCK_RELEASES_WHEN_OVERDUE", "false")
    get_settings.cache_clear()
    built = runner.invoke(cli, [*arguments, "--out", str(tmp_path / "b")])
    assert built.exit_code == 0, built.output
