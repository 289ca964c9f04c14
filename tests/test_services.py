"""The test run says what did not run and how to make it run; CI turns such skips into failures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import services

ROOT = Path(__file__).resolve().parent.parent


def test_the_summary_names_each_missing_service_once_with_its_command() -> None:
    chromium = "Chromium is not installed at /nowhere (apt-get install chromium); or point ..."
    postgres = "postgres is not reachable at postgresql+psycopg://x (OperationalError: refused)."
    lines = services.skip_summary([chromium, chromium, postgres, "something else"])
    assert lines[0].startswith("2 skipped - the browser tests")
    assert "apt-get install chromium" in lines[0] and "CONSENTRY_TEST_CHROMIUM" in lines[0]
    assert (
        lines[1].startswith("1 skipped - the PostgreSQL half") and "CONSENTRY_TEST_POSTGRES_URL" in lines[1]
    )
    assert lines[2] == "1 skipped - something else"
    assert "Running the tests" in lines[3]


def test_the_readme_has_the_section_the_skip_messages_point_to() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    assert "## Running the tests" in readme
    for variable in ("CONSENTRY_TEST_POSTGRES_URL", "CONSENTRY_TEST_REDIS_URL", "CONSENTRY_TEST_CHROMIUM"):
        assert variable in readme


def test_a_run_without_chromium_ends_saying_what_did_not_run() -> None:
    env = {**os.environ, "CONSENTRY_TEST_CHROMIUM": "/nonexistent/chromium", "CONSENTRY_REQUIRE_SERVICES": ""}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "tests/web/test_browser.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tail = result.stdout.splitlines()[-4:]
    assert "what did not run" in "\n".join(tail)
    assert any(
        line.endswith(
            "skipped - the browser tests (settings page, dashboard, screenshots); "
            "to run them: `apt-get install chromium`, or `export CONSENTRY_TEST_CHROMIUM=/path/to/chromium`"
        )
        for line in tail
    ), tail


def test_required_services_turn_the_skip_into_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setenv("CONSENTRY_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="CONSENTRY_REQUIRE_SERVICES=1"):
        services.chromium()
    monkeypatch.setenv("CONSENTRY_REQUIRE_SERVICES", "")
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        services.chromium()
