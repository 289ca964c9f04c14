"""A build killed mid-way publishes nothing, and the next build removes what it left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from consentry.config import Settings
from consentry.consent.service import ConsentContext
from consentry.datasets import service
from consentry.db import Database
from consentry.migrate import upgrade
from tests.datasets.conftest import build, load, staging_folders

CHILD = textwrap.dedent(
    """
    import sys, time
    from datetime import datetime
    from pathlib import Path
    from consentry.config import Settings
    from consentry.consent.service import ConsentContext
    from consentry.datasets import service
    from consentry.db import Database

    url, home, lake, out, marker = sys.argv[1:6]

    def progress(stage, done, total):
        if stage == "posts: write":
            Path(marker).write_text(stage)
            time.sleep(120)

    service.build_release(
        Database(url),
        ctx=ConsentContext.from_settings(Settings(home=Path(home), database_url=url)),
        recipient="assistant",
        purpose="train-ai",
        categories=["posts"],
        lake=Path(lake),
        out=Path(out),
        as_of=datetime.fromisoformat("2026-06-01T00:00:00+00:00"),
        progress=progress,
    )
    """
)


def test_a_killed_build_publishes_nothing_and_the_next_build_cleans_up(
    tmp_path: Path, scenario_lake: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'consentry.db'}"
    database = Database(url)
    upgrade(database)
    settings = Settings(home=tmp_path / "home", database_url=url)
    ctx = ConsentContext.from_settings(settings)
    load(database, ctx, scenario_lake)
    releases = tmp_path / "releases"
    out, marker = releases / "killed", tmp_path / "marker"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(settings.home), str(scenario_lake), str(out), str(marker)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, "the build ended before it was killed"
            assert time.monotonic() < deadline, "the build never reached the write step"
            time.sleep(0.1)
        assert staging_folders(releases)  # it was writing
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not out.exists()
    left = staging_folders(releases)
    assert len(left) == 1
    with database.read() as session:
        assert service.list_releases(session) == []

    release = build(database, ctx, scenario_lake, releases / "next")
    assert not left[0].exists() and not staging_folders(releases)
    assert (releases / "next" / "manifest.json").exists() and not out.exists()
    with database.read() as session:
        assert [r.id for r in service.list_releases(session)] == [release.id]
    database.dispose()
