"""The OpenAPI description holds for what the service answers: a bounded schemathesis run.

A real ``consentry serve`` on a loopback port, with seeded data the routes can reach (accounts with
posts and consent events, an organisation, a partner with a built release and an API key), is fuzzed by
the schemathesis command line over its own ``/openapi.json`` once per credential kind (admin token,
account token, partner API key): examples, coverage (boundary values, NUL characters, huge ids, wrong
types) and fuzzing phases, valid and invalid input, deterministic generation with a fixed seed. The run
must find no server error, no status code and no content type the description does not declare, and no
response body that breaks its schema. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI

from consentry.auth.service import create_token
from consentry.config import Settings
from consentry.db import Database
from consentry.metering.service import create_organisation
from consentry.openapi import PROBLEM
from consentry.social.service import create_post
from tests.conftest import make_account
from tests.partners.conftest import A, World
from tests.partners.conftest import scenario_lake as scenario_lake
from tests.partners.conftest import world as world
from tests.test_serve import _start

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
MAX_EXAMPLES = 5
"""Examples per operation and phase: with the coverage phase's boundary cases, about 2,500 cases per
credential kind, a minute or less each."""
SEED = 20261205


@dataclass(frozen=True)
class Credentials:
    """The ``Authorization`` header of each credential kind."""

    headers: dict[str, str]


@pytest.fixture
def credentials(database: Database, world: World) -> Credentials:
    """Data the routes can reach and a credential of each kind (``world`` holds the partner, its release
    and its key, built from the datasets tests' scenario lake)."""
    ada, ada_token = make_account(database, handle="ada")
    bob, _ = make_account(database, handle="bob", country="DE")
    with database.write() as session:
        admin = create_token(session, kind="admin", label="fuzz")
        for author, text in ((ada, "hello world"), (bob, "guten tag"), (ada, "sourdough again")):
            create_post(session, author_id=author, text=text)
        create_organisation(session, name="Example AI Labs")
    return Credentials(
        headers={
            "admin": f"Bearer {admin}",
            "account": f"Bearer {ada_token}",
            "partner": world.auth(A)["Authorization"],
        }
    )


@dataclass
class Outcome:
    """What one schemathesis run found."""

    cases: int
    failures: list[str]


def fuzz(base: str, authorization: str, report: Path) -> Outcome:
    """Run the schemathesis command line against ``base`` with one credential; its cases and failures."""
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{base}/openapi.json",
        "--header",
        f"Authorization: {authorization}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-deterministic",
        "--continue-on-failure",
        "--suppress-health-check",
        "all",
        "--workers",
        "1",
        "--no-color",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
    ]
    # run in the report's folder: schemathesis keeps a cache folder where it runs
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=900, check=False, cwd=report.parent
    )
    cases, failures = _read_report(report)
    if done.returncode != 0 and not failures:
        failures.append(
            f"schemathesis exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
        )
    return Outcome(cases=cases, failures=failures)


def _read_report(report: Path) -> tuple[int, list[str]]:
    """Cases run and distinct failures (operation, status, what was wrong) from a schemathesis NDJSON
    report, each with the request that showed it."""
    cases = 0
    failures: dict[str, str] = {}
    for line in report.read_text().splitlines():
        scenario = json.loads(line).get("ScenarioFinished")
        if scenario is None:
            continue
        recorder = scenario["recorder"]
        cases += len(recorder.get("cases", {}))
        for case_id, checks in recorder.get("checks", {}).items():
            for check in checks:
                if check["status"] != "failure":
                    continue
                failure = check["failure_info"]["failure"]
                interaction = recorder.get("interactions", {}).get(case_id, {})
                request = interaction.get("request", {})
                status = interaction.get("response", {}).get("status_code")
                key = f"{failure['operation']} -> {status}: {failure['title']}"
                sent = f"{request.get('method')} {request.get('uri')}"
                failures.setdefault(key, f"{key}\n    {sent}\n    {failure['message'][:400]}")
    return cases, sorted(failures.values())


def test_every_operation_declares_its_problems(app: FastAPI) -> None:
    """The description itself: every operation lists its error statuses under problem+json."""
    schema = app.openapi()
    assert "Problem" in schema["components"]["schemas"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    operations = [(path, method, op) for path, ops in schema["paths"].items() for method, op in ops.items()]
    assert len(operations) > 80
    for path, method, operation in operations:
        errors = {status: r for status, r in operation["responses"].items() if status[0] in "45"}
        assert "422" in errors, (method, path)
        for status, response in errors.items():
            assert list(response["content"]) == [PROBLEM], (method, path, status)
    account_only = schema["paths"]["/v1/me/settings"]["put"]["responses"]
    assert {"401", "403", "413", "422"} <= set(account_only)
    public = schema["paths"]["/v1/policies/{version}"]["get"]["responses"]
    assert set(public) == {"200", "404", "422", "503"}  # 503: the database cannot be reached
    metered = schema["paths"]["/v1/platform/posts/{post_id}"]["get"]["responses"]
    assert {"401", "402", "403", "404", "410", "429"} <= set(metered)


def test_the_openapi_description_holds(
    settings: Settings, database: Database, credentials: Credentials, tmp_path: Path
) -> None:
    server, base = _start(settings, database, tmp_path, workers=1)
    outcomes: dict[str, Outcome] = {}
    try:
        for kind, authorization in credentials.headers.items():
            outcomes[kind] = fuzz(base, authorization, tmp_path / f"{kind}.ndjson")
    finally:
        server.terminate()
        server.wait(timeout=30)
    for kind, outcome in outcomes.items():
        print(f"{kind}: {outcome.cases} cases, {len(outcome.failures)} distinct failures")
    assert all(outcome.cases > 500 for outcome in outcomes.values()), outcomes
    failures = [f"[{kind}] {failure}" for kind, outcome in outcomes.items() for failure in outcome.failures]
    assert not failures, f"{len(failures)} distinct failures:\n" + "\n".join(failures)
