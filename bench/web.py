"""The web pages: settings page server time on the demo data, and the dashboard over 1,000,000 accounts.

Targets (issue "Web"): first paint of the settings page's server HTML <= 100 ms with the demo data; the
dashboard's queries over 1,000,000 accounts' consent state <= 1 s.

1. Settings page: the demo database (``consentry demo``: 3,000 generated accounts and the named ones), one
   account signed in; median server time of ``GET /settings`` over many requests through the ASGI app,
   against ``GET /v1/me/settings`` (the JSON of the same settings) measured in the same run. With
   Chromium installed, also the browser's first contentful paint of the page served by uvicorn.
2. Dashboard: 1,000,000 accounts and ~1.5 million explicit events (``bench.consent_eval.make_world``)
   written into SQLite. Measured: the first load of the in-memory state (cold), and the dashboard's
   queries once warm, each run after 100 new consent events were appended (median; the 12-month chart,
   then each range: 13 weeks, 12 months, 5 years). The baseline, measured in the same run, is what the
   existing functions give without the cache: read every account and event (``accounts_table``,
   ``events_table``) and ``evaluate_many`` at each time of the chart.

    .venv/bin/python -m bench.web [--accounts 1000000] [--requests 300] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from fastapi.testclient import TestClient

if __package__ in (None, ""):  # run as `python bench/x.py`: the repository root holds `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import median_seconds, report
from bench.consent_eval import make_world
from consentry.api import create_app
from consentry.config import Settings
from consentry.consent.catalog import load_catalog
from consentry.consent.evaluate import evaluate_many
from consentry.consent.service import ConsentContext, accounts_table, events_table, load_policies
from consentry.db import Database
from consentry.demo import seed_demo
from consentry.migrate import upgrade
from consentry.web import dashboard as web
from consentry.web.snapshot import ConsentStateCache

CHROMIUM = os.environ.get("CONSENTRY_CHROMIUM", "/usr/bin/chromium")


def _timed_requests(client: TestClient, path: str, requests: int) -> list[float]:
    samples = []
    for _ in range(requests):
        start = time.perf_counter()
        response = client.get(path)
        samples.append(time.perf_counter() - start)
        assert response.status_code == 200, response.text[:500]
    return samples


def _first_paint(app: Any, token: str, runs: int) -> dict[str, float] | None:
    """Median response start and first contentful paint of /settings in Chromium (None without it)."""
    if not os.access(CHROMIUM, os.X_OK):
        return None
    import uvicorn
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
    ]
    ttfb, paint = [], []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
            context = browser.new_context(viewport={"width": 390, "height": 844})
            context.add_cookies([{"name": "consentry_token", "value": token, "url": base}])
            page = context.new_page()
            page.goto(base + "/settings")
            for _ in range(runs):
                page.goto(base + "/settings", wait_until="load")
                timing = page.evaluate(
                    "(() => { const n = performance.getEntriesByType('navigation')[0];"
                    " const p = performance.getEntriesByName('first-contentful-paint')[0];"
                    " return [n.responseStart - n.requestStart, p ? p.startTime : -1]; })()"
                )
                ttfb.append(timing[0] / 1000)
                if timing[1] >= 0:
                    paint.append(timing[1] / 1000)
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    return {
        "browser_server_response_s_median": statistics.median(ttfb),
        "browser_first_contentful_paint_s_median": statistics.median(paint) if paint else -1.0,
    }


def settings_page(requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp), database_url=f"sqlite:///{tmp}/demo.db")
        database = Database(settings.resolved_database_url)
        upgrade(database)
        info = seed_demo(database, settings=settings)
        _, token = info.account_tokens["ada"]
        app = create_app(settings, database=database, migrate=False)
        with TestClient(app) as client:
            client.cookies.set("consentry_token", token)
            client.put(
                "/v1/me/settings",
                json={"settings": {"assistant_training_posts": "deny"}},
                headers={"Authorization": f"Bearer {token}"},
            )
            _timed_requests(client, "/settings", 20)  # warm up
            page = _timed_requests(client, "/settings", requests)
            api = _timed_requests(client, "/v1/me/settings", requests)
            health = _timed_requests(client, "/healthz", requests)
        figures: dict[str, Any] = {
            "demo_accounts": info.seeded.rows.get("accounts") if info.seeded else None,
            "settings_page_s_median": statistics.median(page),
            "settings_page_s_p95": sorted(page)[int(len(page) * 0.95) - 1],
            "settings_json_s_median": statistics.median(api),
            "healthz_s_median": statistics.median(health),
            "page_over_json_ratio": statistics.median(page) / statistics.median(api),
        }
        browser = _first_paint(create_app(settings, database=database, migrate=False), token, 30)
        if browser:
            figures.update(browser)
        database.dispose()
        return figures


def _write_world(path: Path, accounts: int) -> int:
    """1,000,000 accounts and their events straight into SQLite (fast, unsigned: the chain is not
    what is measured). Returns the number of events."""
    table, events = make_world(accounts)
    fmt = "%Y-%m-%d %H:%M:%S"

    def text(column: Any) -> list[str | None]:
        return pc.strftime(pc.cast(column, pa.timestamp("us")), format=fmt).to_pylist()  # type: ignore[no-any-return]

    ids = table["account_id"].to_pylist()
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA synchronous=OFF")
        connection.executemany(
            "INSERT INTO accounts (id, handle, created_at, country, birth_year, protected, status, "
            "status_changed_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
            zip(
                ids,
                (f"u{i}" for i in ids),
                text(table["created_at"]),
                table["country"].to_pylist(),
                table["birth_year"].to_pylist(),
                table["status"].to_pylist(),
                text(table["status_changed_at"]),
                strict=True,
            ),
        )
        connection.executemany(
            "INSERT INTO consent_subjects (account_id, subject_key) VALUES (?, ?)",
            ((i, f"{i:032x}") for i in ids),
        )
        connection.executemany(
            "INSERT INTO consent_events (seq, subject_key, setting, value, source, policy_version, "
            "recorded_at, client, prev_hash, hash) VALUES (?, ?, ?, ?, 'user', 1, ?, 'web', '', '')",
            zip(
                events["seq"].to_pylist(),
                (f"{o:032x}" for o in events["account_id"].to_pylist()),
                events["setting"].to_pylist(),
                events["value"].to_pylist(),
                text(events["recorded_at"]),
                strict=True,
            ),
        )
    return events.num_rows


def _append_events(path: Path, count: int, accounts: int) -> None:
    """New explicit choices, as the settings page would record them (recorded now)."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(path) as connection:
        top = connection.execute("SELECT max(seq) FROM consent_events").fetchone()[0]
        connection.executemany(
            "INSERT INTO consent_events (seq, subject_key, setting, value, source, policy_version, "
            "recorded_at, client, prev_hash, hash) "
            "VALUES (?, ?, 'assistant_training_posts', 'deny', 'user', 1, ?, 'web', '', '')",
            ((top + i + 1, f"{(top * 7919 + i * 104729) % accounts + 1:032x}", now) for i in range(count)),
        )


def dashboard(accounts: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.db"
        database = Database(f"sqlite:///{path}")
        upgrade(database)
        started = time.perf_counter()
        events = _write_world(path, accounts)
        seed_s = time.perf_counter() - started
        ctx = ConsentContext.from_settings(Settings(home=Path(tmp), database_url=database.url))
        cache = ConsentStateCache(settings=ctx.catalog.keys, jurisdictions=ctx.jurisdictions)

        def overview(range_key: str = "12m") -> web.ConsentOverview:
            with database.read() as session:
                result = web.consent_overview(session, cache=cache, ctx=ctx, range_key=range_key)
                web.recent_releases(session)
                web.partner_revocations(session)
                web.leaderboard(session, threshold=1_000_000)
            return result

        cold_s, _ = median_seconds(overview, 1)
        warm: list[float] = []
        for _ in range(runs):
            _append_events(path, 100, accounts)
            start = time.perf_counter()
            result = overview()
            warm.append(time.perf_counter() - start)
        compute_s, _ = median_seconds(overview, runs)  # nothing new: the computation alone
        by_range = {}  # each chart range, after new events (the 5-year chart has the most times)
        for range_key in web.RANGES:
            samples = []
            for _ in range(runs):
                _append_events(path, 100, accounts)
                start = time.perf_counter()
                overview(range_key)
                samples.append(time.perf_counter() - start)
            by_range[range_key] = round(statistics.median(samples), 3)

        def baseline() -> None:
            with database.read() as session:
                accounts_t = accounts_table(session)
                events_t = events_table(session)
                policies = load_policies(session)
            for at in web.timeline(datetime.now(UTC), "12m"):
                evaluate_many(
                    accounts_t,
                    events_t,
                    settings=list(load_catalog().keys),
                    at=at,
                    policies=policies,
                    jurisdictions=ctx.jurisdictions,
                )

        baseline_s, _ = median_seconds(baseline, 1)
        database.dispose()
        warm_s = statistics.median(warm)
        return {
            "accounts": accounts,
            "events": events,
            "seed_s": seed_s,
            "chart_times": len(result.times),
            "dashboard_cold_s": cold_s,
            "dashboard_warm_s_median": warm_s,
            "dashboard_warm_samples_s": [round(s, 3) for s in warm],
            "dashboard_compute_only_s_median": compute_s,
            "dashboard_warm_s_median_by_range": by_range,
            "baseline_evaluate_many_per_time_s": baseline_s,
            "speedup_warm_vs_baseline_x": baseline_s / warm_s,
            "speedup_cold_vs_baseline_x": baseline_s / cold_s,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-dashboard", action="store_true")
    args = parser.parse_args()
    figures = settings_page(args.requests)
    if not args.skip_dashboard:
        figures.update(dashboard(args.accounts, args.runs))
    figures["target"] = "settings page <= 0.1 s; dashboard queries over 1,000,000 accounts <= 1 s"
    report("web", figures)


if __name__ == "__main__":
    main()
