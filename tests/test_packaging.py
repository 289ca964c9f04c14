"""What a fresh clone installs: the demo only the service, the tests their extras; a clean build."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def dry_run(*targets: str) -> str:
    """The commands ``make`` would run from a fresh clone (every target out of date)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    result = subprocess.run(
        [make, "--dry-run", "--always-make", *targets], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return result.stdout


def test_make_demo_installs_the_service_without_the_test_extras() -> None:
    demo = dry_run("demo", "PORT=8001")
    assert "pip install --quiet -e .\n" in demo
    assert "[test]" not in demo
    assert ".venv/bin/consentry demo --host 127.0.0.1 --port 8001" in demo


def test_make_test_installs_the_test_extras_under_a_stamp_of_its_own() -> None:
    test = dry_run("test")
    assert "pip install --quiet -e '.[test]'" in test
    assert "touch .venv/.installed-runtime .venv/.installed-test" in test


def test_the_license_is_an_spdx_expression_and_the_build_backend_is_pinned() -> None:
    """setuptools deprecates ``license = {text = ...}`` (builds stop in 2027); 77 reads the SPDX string."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    assert project["project"]["license"] == "Apache-2.0"
    [backend] = project["build-system"]["requires"]
    assert backend.startswith("setuptools>=77,<")
