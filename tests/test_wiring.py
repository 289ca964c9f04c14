"""Every entry point wires partners to consent's opt-outs, and through each one an opt-out revokes what
releases hold in the transaction that records it: a subscriber that refuses rolls back both."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consentry import wiring
from consentry.auth.service import create_token
from consentry.config import Settings
from consentry.consent import events
from consentry.consent.models import ConsentEvent
from consentry.datasets.models import Release
from consentry.db import Database
from consentry.errors import Conflict
from tests.partners.test_revocations import all_revocations
from tests.partners.test_revocations import platform as platform
from tests.partners.test_revocations import scenario_lake as scenario_lake
from tests.test_cli import env as env
from tests.test_cli import run

ENTRY_POINTS = ("consentry.api", "consentry.cli", "consentry.job_handlers")
"""The app factory, the command line (which runs the worker too) and the worker's job handlers."""


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_each_entry_point_subscribes_partners_to_opt_outs(module: str) -> None:
    """In a fresh interpreter, importing the entry point alone registers the subscriber."""
    probe = (
        f"import {module}\n"
        "from consentry.consent import events\n"
        "from consentry.wiring import revoke_opt_outs\n"
        "raise SystemExit(0 if revoke_opt_outs in events.subscribers() else 1)\n"
    )
    assert subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0


def refuse(session: Session, change: events.OptOuts) -> None:
    """A subscriber after the partners one that refuses the change (so everything must roll back)."""
    raise Conflict("refused by a later subscriber")


def ledger_size(database: Database) -> int:
    with database.read() as session:
        return int(session.scalar(select(func.count()).select_from(ConsentEvent)) or 0)


def test_an_opt_out_through_the_api_revokes_in_its_transaction(
    database: Database,
    platform: dict[str, Release],
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(events, "_subscribers", [wiring.revoke_opt_outs, refuse])
    with database.write() as session:
        headers = {"Authorization": f"Bearer {create_token(session, kind='account', account_id=1)}"}
    before = ledger_size(database)
    body = {"settings": {"third_party_sharing": "deny"}}
    refused = client.put("/v1/me/settings", json=body, headers=headers)
    assert refused.status_code == 409, refused.text
    assert (ledger_size(database), all_revocations(database)) == (before, [])

    monkeypatch.setattr(events, "_subscribers", [wiring.revoke_opt_outs])
    assert client.put("/v1/me/settings", json=body, headers=headers).status_code == 200
    assert ledger_size(database) == before + 1
    found = all_revocations(database)
    assert found and {(r.account_id, r.reason, r.release_id) for r in found} == {
        (1, "opt_out", platform["third"].id)
    }


def test_an_opt_out_through_the_command_line_revokes_in_its_transaction(
    env: Settings, database: Database, platform: dict[str, Release], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "_subscribers", [wiring.revoke_opt_outs, refuse])
    before = ledger_size(database)
    code, out = run("settings", "set", "1", "third_party_sharing=deny")
    assert code != 0 and "refused by a later subscriber" in out, out
    assert (ledger_size(database), all_revocations(database)) == (before, [])

    monkeypatch.setattr(events, "_subscribers", [wiring.revoke_opt_outs])
    code, out = run("settings", "set", "1", "third_party_sharing=deny")
    assert code == 0, out
    assert {r.account_id for r in all_revocations(database)} == {1}


def test_an_opt_out_through_a_command_line_import_revokes_in_its_transaction(
    env: Settings,
    database: Database,
    scenario_lake: Path,
    platform: dict[str, Release],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    lake = tmp_path / "import"
    (lake / "consent_events").mkdir(parents=True)
    (lake / "accounts").symlink_to(scenario_lake / "accounts", target_is_directory=True)
    pq.write_table(
        pa.table(
            {
                "account_id": pa.array([1], pa.int64()),
                "setting": ["third_party_sharing"],
                "value": ["deny"],
                "source": ["web"],
                "recorded_at": pa.array([datetime(2026, 7, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
            }
        ),
        lake / "consent_events" / "part-0.parquet",
    )
    monkeypatch.setattr(events, "_subscribers", [wiring.revoke_opt_outs, refuse])
    before = ledger_size(database)
    code, out = run("ledger", "import", str(lake))
    assert code != 0 and "refused by a later subscriber" in out, out
    assert (ledger_size(database), all_revocations(database)) == (before, [])

    monkeypatch.setattr(events, "_subscribers", [wiring.revoke_opt_outs])
    code, out = run("ledger", "import", str(lake))
    assert code == 0, out
    assert ledger_size(database) == before + 1
    assert {r.account_id for r in all_revocations(database)} == {1}
