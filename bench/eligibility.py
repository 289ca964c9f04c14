"""Real-time eligibility: 10,000 ids per HTTP call, and 1,000,000 ids in process, on SQLite.

Targets (real-time eligibility issue): ``POST /v1/eligibility`` with 10,000 ids <= 20 ms median on this
machine; ``allowed_ids`` over 1,000,000 ids (an Arrow array) <= 100 ms median.

Baselines, measured in the same run on the same database: ``evaluate_accounts`` (read the asked accounts
and their events, evaluate vectorised: what an uncached answer costs) for the same 10,000 ids and for the
same 1,000,000 ids; and a full rebuild of the cached state (``evaluate_all``-equivalent: every account and
event read and evaluated). Also measured: a consent change followed by the next call (the call that
patches the change in), and the first call after start (builds the state).

HTTP is measured through a real ``uvicorn`` server on 127.0.0.1 (one worker, httpx client with
keep-alive: JSON encoding, HTTP parsing, admin token check, probe and lookup all included) and through
Starlette's in-process ``TestClient`` (no socket).

    .venv/bin/python -m bench.eligibility [--accounts 1000000] [--runs 15] [--http-runs 60]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa

if __package__ in (None, ""):  # run as `python bench/x.py`: the repository root holds `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import median_seconds, report
from consentry.auth.service import create_token
from consentry.config import Settings
from consentry.consent.importer import import_events
from consentry.consent.service import ConsentContext, change_settings, evaluate_accounts
from consentry.db import Database
from consentry.eligibility import service
from consentry.lake import schema
from consentry.lake.generate import generate_lake
from consentry.migrate import upgrade
from consentry.social.seed import FOLDER_TABLES, _read_folder, insert_rows

SETTING = "assistant_realtime"


def seed(database: Database, lake: Path, ctx: ConsentContext, accounts: int) -> dict[str, float]:
    """A synthetic platform: ``accounts`` accounts (mixed countries, ages, statuses) and their consent
    events (about 1.2 per account) in the ledger."""
    started = time.perf_counter()
    generate_lake(lake, accounts=accounts, posts=0, seed=5)
    generated = time.perf_counter() - started
    table, names = FOLDER_TABLES["accounts"]
    rows = _read_folder(lake, schema.FOLDERS_BY_NAME["accounts"])
    with database.write() as session:
        insert_rows(session, table, rows, names)
        events = import_events(session, lake, ctx=ctx).events
    return {"generate_s": generated, "seed_s": time.perf_counter() - started - generated, "events": events}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_medians(base: str, token: str, batches: list[list[int]], runs: int) -> tuple[float, list[float]]:
    headers = {"Authorization": f"Bearer {token}"}
    samples = []
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        for index in range(runs + 5):
            body = {"setting": SETTING, "account_ids": batches[index % len(batches)]}
            start = time.perf_counter()
            answer = client.post("/v1/eligibility", json=body)
            elapsed = time.perf_counter() - start
            answer.raise_for_status()
            if index >= 5:  # the first calls warm connections (and, on the first, the state)
                samples.append(elapsed)
    return statistics.median(samples), samples


def uvicorn_server(home: Path, url: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CONSENTRY_HOME": str(home), "CONSENTRY_DATABASE_URL": url}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "consentry.api:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("uvicorn did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--http-runs", type=int, default=60)
    parser.add_argument("--baseline-runs", type=int, default=3)
    parser.add_argument("--skip-uvicorn", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(3)
    figures: dict[str, Any] = {"accounts": args.accounts, "setting": SETTING}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        database = Database(f"sqlite:///{tmp}/bench.db")
        upgrade(database)
        settings = Settings(home=home, database_url=database.url)
        ctx = ConsentContext.from_settings(settings)
        figures.update(seed(database, Path(tmp) / "lake", ctx, args.accounts))
        with database.write() as session:
            token = create_token(session, kind="admin", label="bench")
        with database.read() as session:
            rows = session.connection().exec_driver_sql("SELECT id FROM accounts").scalars().all()
        ids = np.asarray(rows, dtype=np.int64)
        million = pa.array(rng.permutation(ids)[: min(1_000_000, ids.size)])
        batches = [rng.choice(ids, size=10_000, replace=False).tolist() for _ in range(20)]
        cache = service.cache_for(database, catalog=ctx.catalog, jurisdictions=ctx.jurisdictions)

        # --- in process -------------------------------------------------------------------------
        start = time.perf_counter()
        first = service.allowed_ids(database, ids=million, setting=SETTING, ctx=ctx)
        figures["first_call_builds_state_s"] = time.perf_counter() - start
        figures["allowed_share"] = first.size / len(million)
        in_process, samples = median_seconds(
            lambda: service.allowed_ids(database, ids=million, setting=SETTING, ctx=ctx), args.runs
        )
        figures["in_process_1m_ms_median"] = in_process * 1000
        figures["in_process_1m_samples_ms"] = [round(s * 1000, 1) for s in samples]
        state = cache.state()
        query = np.asarray(million.to_numpy(), dtype=np.int64)
        column = (state.keys.index(SETTING),)
        lookup, _ = median_seconds(lambda: state.mask(query, column), args.runs)
        figures["lookup_only_1m_ms_median"] = lookup * 1000
        rebuild, _ = median_seconds(cache.rebuild, args.baseline_runs)
        figures["baseline_rebuild_all_s_median"] = rebuild

        def from_scratch(asked: list[int]) -> Any:
            with database.read() as session:
                return evaluate_accounts(
                    session, account_ids=asked, settings=[SETTING], at=datetime.now(UTC), ctx=ctx
                )

        everyone = query.tolist()
        scratch_1m, _ = median_seconds(lambda: from_scratch(everyone), max(1, args.baseline_runs - 2))
        figures["baseline_evaluate_accounts_1m_s"] = scratch_1m
        figures["speedup_1m_x"] = scratch_1m / in_process
        scratch_10k, _ = median_seconds(lambda: from_scratch(batches[0]), args.runs)
        figures["baseline_evaluate_accounts_10k_ms_median"] = scratch_10k * 1000

        # a change, then the next call (which patches the state)
        patch_samples = []
        changed = rng.choice(ids, size=10, replace=False).tolist()
        for index, account_id in enumerate(changed):
            with database.write() as session:
                try:
                    change_settings(
                        session,
                        account_id=int(account_id),
                        changes={SETTING: "deny" if index % 2 else "allow"},
                        client="web",
                        ctx=ctx,
                    )
                except Exception:  # deactivated or deleted accounts cannot change settings
                    continue
            start = time.perf_counter()
            after = service.allowed_mask(database, ids=pa.array([account_id]), setting=SETTING, ctx=ctx)
            patch_samples.append(time.perf_counter() - start)
            expected = from_scratch([int(account_id)])[SETTING].to_pylist()
            assert after.tolist() == expected, (account_id, after, expected)
        figures["change_then_call_ms_median"] = statistics.median(patch_samples) * 1000
        figures["state_rebuilds"] = cache.stats.rebuilds
        figures["state_patches"] = cache.stats.patches

        # --- HTTP ---------------------------------------------------------------------------------
        from fastapi.testclient import TestClient

        from consentry.api import create_app

        app = create_app(settings, database=database, migrate=False)
        with TestClient(app) as client:
            samples = []
            for index in range(args.http_runs + 5):
                body = {"setting": SETTING, "account_ids": batches[index % len(batches)]}
                start = time.perf_counter()
                answer = client.post(
                    "/v1/eligibility", json=body, headers={"Authorization": f"Bearer {token}"}
                )
                elapsed = time.perf_counter() - start
                assert answer.status_code == 200, answer.text
                if index >= 5:
                    samples.append(elapsed)
        figures["http_testclient_10k_ms_median"] = statistics.median(samples) * 1000
        if not args.skip_uvicorn:
            port = free_port()
            server = uvicorn_server(home, database.url, port)
            try:
                median, samples = http_medians(f"http://127.0.0.1:{port}", token, batches, args.http_runs)
            finally:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
            figures["http_uvicorn_10k_ms_median"] = median * 1000
            figures["http_uvicorn_10k_p90_ms"] = float(np.percentile(samples, 90)) * 1000
            figures["speedup_10k_x"] = scratch_10k / median
        figures["target"] = "HTTP 10,000 ids <= 20 ms median; 1,000,000 ids in process <= 100 ms median"
        database.dispose()
    report("eligibility", figures)


if __name__ == "__main__":
    main()
