"""Access to the real PostgreSQL and Redis of the test machine.

Without them the tests that need them skip with a message saying how to run them; with
``CONSENTRY_REQUIRE_SERVICES=1`` (set by ``.ci/run``) a missing service fails the test instead.
"""

from __future__ import annotations

import os

import pytest

POSTGRES_URL = os.environ.get(
    "CONSENTRY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CONSENTRY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def services_required() -> bool:
    """Whether a missing service must fail rather than skip."""
    return os.environ.get("CONSENTRY_REQUIRE_SERVICES", "") not in ("", "0")


def missing_service(name: str, url: str, error: Exception) -> None:
    """Skip (or fail, when services are required) because ``name`` is not reachable."""
    message = (
        f"{name} is not reachable at {url} ({error.__class__.__name__}: {error}). Start it (see README, "
        f"'Running the tests') or point CONSENTRY_TEST_{name.upper()}_URL at one."
    )
    if services_required():
        pytest.fail(message + " CONSENTRY_REQUIRE_SERVICES=1 makes this a failure.")
    pytest.skip(message)


CHROMIUM = os.environ.get("CONSENTRY_TEST_CHROMIUM", "/usr/bin/chromium")


def chromium() -> str:
    """The Chromium the browser tests drive (Debian's, installed by ``.ci/run``): its path, or a skip
    (a failure when services are required) when it or Playwright is missing."""
    problem = None
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        problem = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError as error:
            problem = f"Playwright is not installed ({error}); install the 'test' extra"
    if problem is not None:
        message = problem + "; or point CONSENTRY_TEST_CHROMIUM at a Chromium binary."
        if services_required():
            pytest.fail(message + " CONSENTRY_REQUIRE_SERVICES=1 makes this a failure.")
        pytest.skip(message)
    return CHROMIUM


GO_MOD_SOURCE = "/usr/share/gocode/src/golang.org/x/mod/sumdb/note"


def go_toolchain() -> str:
    """The Go compiler with Debian's ``golang.org/x/mod`` sources (installed by ``.ci/run``): its path,
    or a skip (a failure when services are required) when either is missing."""
    import shutil

    go = shutil.which("go")
    problem = None
    if go is None:
        problem = "Go is not installed (apt-get install golang-go)"
    elif not os.path.isdir(GO_MOD_SOURCE):
        problem = "golang.org/x/mod is not installed (apt-get install golang-golang-x-mod-dev)"
    if problem is not None:
        if services_required():
            pytest.fail(problem + "; CONSENTRY_REQUIRE_SERVICES=1 makes this a failure.")
        pytest.skip(problem)
    assert go is not None
    return go


def spark_cluster_unavailable(error: Exception) -> None:
    """Skip (or fail, when services are required) because Java or a local Spark cluster would not
    start (``consentry.datasets.engines.spark_cluster``)."""
    message = (
        f"a local Spark cluster cannot start ({error}); install Java 17 (apt-get install openjdk-17-jre)"
    )
    if services_required():
        pytest.fail(message + ". CONSENTRY_REQUIRE_SERVICES=1 makes this a failure.")
    pytest.skip(message)


# What a skip message says, what did not run because of it, and the one command that makes it run.
MISSING = (
    (
        "postgres is not reachable",
        "the PostgreSQL half of every database test",
        "start PostgreSQL on 127.0.0.1:5432 with a database `test` and trust auth (Debian: "
        "`apt-get install postgresql`), or `export CONSENTRY_TEST_POSTGRES_URL=postgresql+psycopg://user@host/db`",
    ),
    (
        "redis is not reachable",
        "the Redis meter tests",
        "`redis-server --daemonize yes --port 6379` (Debian: `apt-get install redis-server`), "
        "or `export CONSENTRY_TEST_REDIS_URL=redis://host:6379/15`",
    ),
    (
        "Chromium is not installed",
        "the browser tests (settings page, dashboard, screenshots)",
        "`apt-get install chromium`, or `export CONSENTRY_TEST_CHROMIUM=/path/to/chromium`",
    ),
    (
        "Playwright is not installed",
        "the browser tests (settings page, dashboard, screenshots)",
        "`make install` (the test extras hold Playwright)",
    ),
    (
        "is not installed (apt-get install golang",
        "the transparency-log checks against Go's golang.org/x/mod",
        "`apt-get install golang-go golang-golang-x-mod-dev`",
    ),
    (
        "Spark cluster cannot start",
        "the Spark cluster tests",
        "`apt-get install openjdk-17-jre-headless`",
    ),
)


def skip_summary(reasons: list[str]) -> list[str]:
    """Lines naming what did not run (one per missing service, with its test count) and the one command
    that makes it run; ``reasons`` are the skip messages of the run."""
    counts: dict[tuple[str, str], int] = {}
    others: dict[str, int] = {}
    for reason in reasons:
        for needle, what, command in MISSING:
            if needle in reason:
                counts[(what, command)] = counts.get((what, command), 0) + 1
                break
        else:
            others[reason] = others.get(reason, 0) + 1
    lines = [f"{n} skipped - {what}; to run them: {command}" for (what, command), n in counts.items()]
    lines += [f"{n} skipped - {reason}" for reason, n in others.items()]
    if counts:
        lines.append(
            "README, 'Running the tests', says what each needs; .ci/run starts them and, with "
            "CONSENTRY_REQUIRE_SERVICES=1, fails instead of skipping."
        )
    return lines
