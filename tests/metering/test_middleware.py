"""The enforcement middleware on a real FastAPI application, with the in-memory and the Redis meter."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.testclient import TestClient

from consentry.db import Database
from consentry.errors import InvalidInput
from consentry.metering import damages, service
from consentry.metering.attribution import Directory, NetworkTable, OrgPolicy, hash_key
from consentry.metering.meter import MemoryMeter, Meter
from consentry.metering.middleware import (
    DatabaseDirectory,
    MeteringMiddleware,
    MiddlewareMetrics,
    parse_price,
    posts_header,
    report_posts,
)
from consentry.metering.models import Organisation, OrganisationKey, OrganisationNetwork
from consentry.metering.redis_meter import RedisMeter
from consentry.metering.service import AccessLogWriter, name_key
from consentry.migrate import upgrade
from tests.metering.conftest import free_port
from tests.metering.test_attribution import GPTBOT_UA

KEY = "cso_test-key-throttled"
PAY_KEY = "cso_test-key-paying"
BLOCK_KEY = "cso_test-key-blocked"
ALLOW_KEY = "cso_test-key-licensed"
ALLOW_QUOTA_KEY = "cso_test-key-licensed-quota"


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def directory() -> Directory:
    organisations = [
        OrgPolicy(id=1, name="Throttled", mode="throttle", quota=100),
        OrgPolicy(id=2, name="Paying", mode="pay", price_micro_usd=1500),
        OrgPolicy(id=3, name="Blocked", mode="block"),
        OrgPolicy(id=4, name="Licensed", mode="allow"),
        OrgPolicy(id=5, name="Licensed with quota", mode="allow", quota=10),
        OrgPolicy(id=6, name="Netted", mode="throttle"),
    ]
    keys = {
        hash_key(k): i for i, k in enumerate([KEY, PAY_KEY, BLOCK_KEY, ALLOW_KEY, ALLOW_QUOTA_KEY], start=1)
    }
    return Directory(organisations, keys=keys, networks=NetworkTable([("203.0.113.0/24", 6)]))


def make_app(meter: Meter, **options: Any) -> tuple[FastAPI, dict[str, int]]:
    app = FastAPI()
    calls = {"posts": 0}

    @app.get("/posts")
    def posts(n: int = 0) -> JSONResponse:
        calls["posts"] += 1
        return JSONResponse({"posts": list(range(min(n, 3)))}, headers=posts_header(n))

    @app.get("/timeline/{account}")
    def timeline(request: Request, account: int, n: int = 0) -> dict[str, int]:
        report_posts(request, n)
        return {"account": account}

    @app.get("/broken")
    def broken() -> JSONResponse:
        return JSONResponse({}, headers={"X-Consentry-Posts": "lots"})

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    options.setdefault("directory", directory())
    app.add_middleware(MeteringMiddleware, meter=meter, exclude=("/healthz",), **options)
    return app, calls


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


T0 = datetime(2026, 11, 20, 22, 0, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "redis"])
def meter(request: pytest.FixtureRequest) -> Iterator[Meter]:
    if request.param == "memory":
        yield MemoryMeter()
    else:
        yield request.getfixturevalue("redis_meter")


def test_throttle_answers_429_when_the_next_response_would_cross_the_quota(meter: Meter) -> None:
    clock = Clock(T0)
    app, calls = make_app(meter, clock=clock)
    with TestClient(app) as client:
        first = client.get("/posts?n=60", headers=auth(KEY))
        assert first.status_code == 200
        assert "x-consentry-posts" not in first.headers
        assert first.headers["RateLimit-Policy"] == '"posts-24h";q=100;qu="posts";w=86400'
        assert first.headers["RateLimit"] == '"posts-24h";r=40;t=86400'

        clock.at = T0 + timedelta(hours=1)
        over = client.get("/posts?n=50", headers=auth(KEY))
        assert over.status_code == 429
        assert over.headers["content-type"] == "application/problem+json"
        assert over.headers["Retry-After"] == str(23 * 3600)  # when the 60 posts of 22:00 leave the window
        assert over.headers["RateLimit"] == '"posts-24h";r=40;t=82800'
        body = over.json()
        assert body["type"] == "urn:consentry:problem:quota-exceeded"
        assert (body["status"], body["limit"], body["used"], body["requested"]) == (429, 100, 60, 50)
        assert "would exceed" in body["detail"]

        exact = client.get("/posts?n=40", headers=auth(KEY))  # fits exactly: 100 is not more than 100
        assert exact.status_code == 200 and exact.headers["RateLimit"].startswith('"posts-24h";r=0;')
        before = calls["posts"]
        full = client.get("/posts?n=1", headers=auth(KEY))
        assert full.status_code == 429 and calls["posts"] == before  # refused before the endpoint ran
        assert int(full.headers["Retry-After"]) == 23 * 3600

        clock.at = T0 + timedelta(hours=24)  # the 60 posts of 22:00 have left the window
        again = client.get("/posts?n=50", headers=auth(KEY))
        assert again.status_code == 200 and again.headers["RateLimit"].startswith('"posts-24h";r=10;')


def test_block_answers_403_without_running_the_endpoint() -> None:
    app, calls = make_app(MemoryMeter(), clock=Clock(T0))
    with TestClient(app) as client:
        response = client.get("/posts?n=5", headers=auth(BLOCK_KEY))
    assert response.status_code == 403 and calls["posts"] == 0
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:consentry:problem:blocked" and body["status"] == 403
    assert "Blocked" in body["detail"] and body["subject"] == "org:3"


def test_pay_answers_402_with_the_price_until_the_client_accepts_it() -> None:
    meter = MemoryMeter()
    app, calls = make_app(meter, clock=Clock(T0))
    with TestClient(app) as client:
        asked = client.get("/posts?n=5", headers=auth(PAY_KEY))
        low = client.get("/posts?n=5", headers={**auth(PAY_KEY), "Consentry-Max-Price-Per-Post": "USD 0.001"})
        paid = client.get(
            "/posts?n=5", headers={**auth(PAY_KEY), "Consentry-Max-Price-Per-Post": "USD 0.002"}
        )
    assert asked.status_code == 402 and low.status_code == 402
    assert asked.headers["Consentry-Price-Per-Post"] == "USD 0.0015"
    assert asked.headers["content-type"] == "application/problem+json"
    body = asked.json()
    assert body["type"] == "urn:consentry:problem:payment-required"
    assert (body["price_per_post_usd"], body["price_per_post_micro_usd"], body["currency"]) == (
        "0.0015",
        1500,
        "USD",
    )
    assert low.json()["offered_micro_usd"] == 1000
    assert paid.status_code == 200 and paid.headers["Consentry-Price-Per-Post"] == "USD 0.0015"
    assert calls["posts"] == 1
    assert meter.consume_now("org:2", 0, at=T0).total == 5


def test_meter_mode_serves_and_counts_over_the_threshold() -> None:
    meter = MemoryMeter()
    metrics = MiddlewareMetrics()
    app, _ = make_app(meter, clock=Clock(T0), threshold=100, metrics=metrics)
    with TestClient(app, client=("198.51.100.20", 4000)) as client:
        responses = [client.get("/posts?n=80") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert responses[-1].headers["RateLimit"].startswith('"posts-24h";r=0;')
    assert meter.consume_now("net:198.51.100.0/24", 0, at=T0).total == 240
    assert (metrics.requests, metrics.posts, metrics.throttled) == (3, 240, 0)
    assert "consentry_metering_posts_total 240" in metrics.prometheus()


def test_allow_mode_is_unlimited_without_a_quota_and_enforced_with_one() -> None:
    app, _ = make_app(MemoryMeter(), clock=Clock(T0), threshold=10)
    with TestClient(app) as client:
        licensed = client.get("/posts?n=500", headers=auth(ALLOW_KEY))
        within = client.get("/posts?n=10", headers=auth(ALLOW_QUOTA_KEY))
        beyond = client.get("/posts?n=1", headers=auth(ALLOW_QUOTA_KEY))
    assert licensed.status_code == 200 and "RateLimit" not in licensed.headers
    assert within.status_code == 200 and within.headers["RateLimit-Policy"].startswith('"posts-24h";q=10;')
    assert beyond.status_code == 429


def test_unregistered_traffic_follows_the_configured_mode() -> None:
    app, _ = make_app(MemoryMeter(), clock=Clock(T0), threshold=50, unregistered_mode="throttle")
    with TestClient(app, client=("198.51.100.20", 4000)) as client:
        assert client.get("/posts?n=50").status_code == 200
        assert client.get("/posts?n=1", headers={"User-Agent": "Mozilla/5.0"}).status_code == 429
        # a crawler is its own subject, with its own count
        assert client.get("/posts?n=50", headers={"User-Agent": GPTBOT_UA}).status_code == 200


def test_attribution_through_the_middleware_and_the_access_log(database: Database) -> None:
    meter = MemoryMeter()
    writer = AccessLogWriter(database, interval=0)
    app, _ = make_app(meter, clock=Clock(T0), access_log=writer, trust_forwarded=True)
    with TestClient(app, client=("192.0.2.50", 4000)) as client:
        client.get("/timeline/7?n=12", headers={"User-Agent": GPTBOT_UA})
        client.get("/posts?n=3", headers={"X-Forwarded-For": "203.0.113.9, 10.0.0.1"})  # Netted's network
        client.get("/posts?n=4", headers={"X-Consentry-Key": KEY})
        client.get("/posts?n=2")
        client.get("/healthz")
    assert meter.subjects() == ["crawler:openai", "org:6", "org:1", "net:192.0.2.0/24"]
    writer.flush()
    with database.read() as session:
        top = {entry.subject: entry for entry in service.top(session, now=T0).entries}
        routes = service.statement(
            session,
            organisation="crawler:openai",
            start=T0,
            end=T0 + timedelta(hours=1),
            terms=damages.Terms(threshold=1),
        ).windows[0]
    assert {s: e.posts_24h for s, e in top.items()} == {
        "crawler:openai": 12,
        "org:6": 3,
        "org:1": 4,
        "net:192.0.2.0/24": 2,
    }
    assert [r.name for r in routes.routes] == ["/timeline/{account}"]  # the route template, not the path
    assert [c.name for c in routes.clients] == ["192.0.2.50"]


def test_database_directory_attributes_registered_organisations(database: Database) -> None:
    with database.write() as session:
        org = service.create_organisation(session, name="OpenAI", mode="block")
        _, key = service.issue_key(session, ref=org.id)
    source = DatabaseDirectory(database, ttl=60)
    app, _ = make_app(MemoryMeter(), clock=Clock(T0), directory=source)
    with TestClient(app) as client:
        assert client.get("/posts?n=1", headers=auth(key)).status_code == 403
        assert (
            client.get("/posts?n=1", headers={"User-Agent": GPTBOT_UA}).status_code == 403
        )  # by operator name
        assert client.get("/posts?n=1").status_code == 200


def test_invalid_post_counts_are_logged_not_counted(caplog: pytest.LogCaptureFixture) -> None:
    meter = MemoryMeter()
    metrics = MiddlewareMetrics()
    app, _ = make_app(meter, clock=Clock(T0), metrics=metrics)
    with caplog.at_level(logging.ERROR, logger="consentry.metering"), TestClient(app) as client:
        response = client.get("/broken", headers=auth(KEY))
    assert response.status_code == 200 and "x-consentry-posts" not in response.headers
    assert metrics.invalid_counts == 1 and meter.consume_now("org:1", 0, at=T0).total == 0
    assert "invalid post count" in caplog.text
    with pytest.raises(InvalidInput):
        posts_header(-1)


def test_redis_down_keeps_serving(caplog: pytest.LogCaptureFixture) -> None:
    meter = RedisMeter(f"redis://127.0.0.1:{free_port()}/0", prefix="consentry-test:down", timeout=0.2)
    metrics = MiddlewareMetrics()
    app, _ = make_app(meter, clock=Clock(T0), metrics=metrics)
    with caplog.at_level(logging.WARNING, logger="consentry.metering"), TestClient(app) as client:
        served = [client.get("/posts?n=30", headers=auth(KEY)) for _ in range(4)]
    assert [r.status_code for r in served] == [200, 200, 200, 429]  # the quota holds on the local count
    assert served[0].headers["RateLimit"].startswith('"posts-24h";r=70;')
    assert metrics.degraded_responses == 3 and meter.metrics.degraded
    assert "unreachable" in caplog.text


def test_parse_price() -> None:
    assert parse_price("USD 0.0015") == 1500
    assert parse_price("0.002") == 2000
    assert parse_price("usd 1") == 1_000_000
    for bad in (None, "", "EUR 1", "free", "-1", "NaN"):
        assert parse_price(bad) is None


def test_1_2_million_across_midnight_is_a_breach_end_to_end(
    database: Database, redis_meter: RedisMeter
) -> None:
    """1,200,000 posts from 22:00 to 02:00 through the middleware, Redis and the access log."""
    with database.write() as session:
        org = service.create_organisation(session, name="Night Reader", mode="meter")
        _, key = service.issue_key(session, ref=org.id)
        org_id = org.id
    writer = AccessLogWriter(database, interval=0)
    clock = Clock(T0)
    app, _ = make_app(redis_meter, clock=clock, directory=DatabaseDirectory(database), access_log=writer)
    with TestClient(app) as client:
        for step in range(12):  # every 20 minutes from 22:00 to 01:40
            clock.at = T0 + timedelta(minutes=20 * step)
            response = client.get("/posts?n=100000", headers=auth(key))
            assert response.status_code == 200
    assert response.headers["RateLimit"].startswith('"posts-24h";r=0;')  # meter mode: served, counted
    assert asyncio.run(redis_meter.usage(f"org:{org_id}", at=clock.at)) == 1_200_000
    writer.close()
    day = timedelta(days=1)
    nov20 = datetime(2026, 11, 20, tzinfo=UTC)
    with database.read() as session:
        first_day = service.statement(session, organisation=org_id, start=nov20, end=nov20 + day)
        second_day = service.statement(session, organisation=org_id, start=nov20 + day, end=nov20 + 2 * day)
        both = service.statement(session, organisation="Night Reader", start=nov20, end=nov20 + 2 * day)
    assert (first_day.posts_in_period, first_day.windows) == (600_000, [])  # no calendar day exceeds 1M
    assert (second_day.posts_in_period, second_day.windows) == (600_000, [])
    assert len(both.windows) == 1
    window = both.windows[0]
    assert (window.start, window.end, window.posts) == (T0, T0 + day, 1_200_000)
    assert window.amount_cents == 1_800_000 and both.total_amount_usd == "18,000.00"
    assert [h.posts for h in window.hours[:4]] == [300_000, 300_000, 300_000, 300_000]


# --- a fresh worker: attribution ready before the first request, never unmetered --------------------


COUNT = 3000


def many_organisations(database: Database, count: int) -> str:
    """``count`` organisations, each with a key and a network (a directory that takes a while to load);
    returns the key of the last one, a throttled organisation with a quota of 600."""
    now = datetime.now(UTC)
    organisations = [
        {"id": n, "name": f"Reader {n}", "name_key": name_key(f"Reader {n}"), "mode": "meter"}
        | {"created_at": now, "updated_at": now}
        for n in range(1, count + 1)
    ]
    organisations[-1].update(mode="throttle", quota=600)
    keys = [
        {"organisation_id": n, "key_hash": hash_key(f"cso_reader-{n}"), "hint": "cso_rea", "created_at": now}
        for n in range(1, count + 1)
    ]
    networks = [
        {"organisation_id": n, "cidr": f"10.{n // 256}.{n % 256}.0/24", "created_at": now}
        for n in range(1, count + 1)
    ]
    with database.write() as session:
        session.execute(sa.insert(Organisation), organisations)
        session.execute(sa.insert(OrganisationKey), keys)
        session.execute(sa.insert(OrganisationNetwork), networks)
    if database.dialect == "postgresql":  # explicit ids: move the sequence past them
        with database.write() as session:
            session.execute(sa.text("SELECT setval('organisations_id_seq', :n)"), {"n": count})
    return f"cso_reader-{count}"


class HeldLock:
    """On PostgreSQL, an ``ACCESS EXCLUSIVE`` lock on the organisations table held by the test, so that
    loading the directory waits for it; on SQLite (readers never wait in WAL mode) nothing."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.connection: sa.Connection | None = None

    def __enter__(self) -> HeldLock:
        if self.database.dialect == "postgresql":
            self.connection = self.database.engine.connect()
            self.connection.exec_driver_sql("LOCK TABLE organisations IN ACCESS EXCLUSIVE MODE")
        return self

    async def wait_for_a_waiter(self) -> None:
        """Until another session waits for the lock (the directory load has started)."""
        if self.connection is None:
            return
        query = sa.text(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = 'organisations' AND NOT l.granted"
        )
        deadline = asyncio.get_running_loop().time() + 30
        while asyncio.get_running_loop().time() < deadline:
            with self.database.engine.connect() as probe:
                if probe.execute(query).scalar_one():
                    return
            await asyncio.sleep(0.02)
        raise AssertionError("nothing waited for the lock on organisations")

    def release(self) -> None:
        if self.connection is not None:
            self.connection.rollback()
            self.connection.close()
            self.connection = None

    def __exit__(self, *_: object) -> None:
        self.release()


def test_concurrent_first_requests_wait_for_the_one_directory_load(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A fresh worker (no start-up run) gets 24 requests at once while its first directory load is
    still running (thousands of organisations; on PostgreSQL also a lock the test holds): every
    request is attributed to its organisation and counted; none is served unmetered."""
    key = many_organisations(database, COUNT)
    meter, metrics = MemoryMeter(), MiddlewareMetrics()
    source = DatabaseDirectory(database, ttl=60)
    app, _ = make_app(meter, clock=Clock(T0), directory=source, metrics=metrics)

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)  # requests only: no lifespan, as a worker's first ones
        async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
            with HeldLock(database) as lock:
                requests = [
                    asyncio.ensure_future(client.get("/posts?n=30", headers=auth(key))) for _ in range(24)
                ]
                await lock.wait_for_a_waiter()
                await asyncio.sleep(0.2)  # the other requests reach the middleware meanwhile
                lock.release()
                return list(await asyncio.gather(*requests))

    with caplog.at_level(logging.WARNING, logger="consentry.metering"):
        responses = asyncio.run(scenario())
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 20 + [429] * 4  # the quota of 600 holds: 20 responses of 30 posts
    assert meter.consume_now(f"org:{COUNT}", 0, at=T0).total == 600
    assert metrics.meter_errors == 0 and metrics.attribution_failures == 0
    assert "unmetered" not in caplog.text and "attribution failed" not in caplog.text


def test_the_directory_is_loaded_at_start_up(database: Database) -> None:
    many_organisations(database, 200)
    source = DatabaseDirectory(database, ttl=60)
    app, _ = make_app(MemoryMeter(), clock=Clock(T0), directory=source)
    with TestClient(app):
        assert source.loaded  # before any request


def test_the_application_loads_attribution_before_serving(app: FastAPI) -> None:
    with TestClient(app):
        layer: Any = app.middleware_stack
        while not isinstance(layer, MeteringMiddleware):
            layer = layer.app
        assert isinstance(layer.directory, DatabaseDirectory)
        assert layer.directory.loaded


def test_a_request_that_cannot_be_attributed_is_counted_against_unknown(
    database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The directory cannot be loaded (its database has no tables): requests are served, counted
    against ``unknown`` and logged with their route and client; once the directory loads, attribution
    is back."""
    broken = Database(f"sqlite:///{tmp_path / 'unmigrated.db'}")
    source = DatabaseDirectory(broken, ttl=60, retry_interval=0)
    meter, metrics = MemoryMeter(), MiddlewareMetrics()
    writer = AccessLogWriter(database, interval=0)
    app, _ = make_app(meter, clock=Clock(T0), directory=source, metrics=metrics, access_log=writer)
    logs = caplog.at_level(logging.WARNING, logger="consentry.metering")
    with logs, TestClient(app, client=("192.0.2.50", 4000)) as client:
        first = client.get("/posts?n=12", headers=auth(KEY))
        second = client.get("/timeline/7?n=5", headers={"User-Agent": GPTBOT_UA})
        upgrade(broken)  # the database is back
        third = client.get("/posts?n=2", headers=auth(KEY))
    assert [first.status_code, second.status_code, third.status_code] == [200, 200, 200]
    assert meter.subjects() == ["unknown", "net:192.0.2.0/24"]
    assert meter.consume_now("unknown", 0, at=T0).total == 17
    assert metrics.attribution_failures == 2 and metrics.meter_errors == 0
    assert "counting the request against 'unknown'" in caplog.text
    writer.close()
    with database.read() as session:
        top = {entry.subject: entry.posts_24h for entry in service.top(session, now=T0).entries}
        statement = service.statement(
            session,
            organisation="unknown",
            start=T0,
            end=T0 + timedelta(hours=1),
            terms=damages.Terms(threshold=1),
        )
    assert top == {"unknown": 17, "net:192.0.2.0/24": 2}
    assert statement.subject == "unknown" and statement.posts_in_period == 17
    window = statement.windows[0]
    assert sorted(route.name for route in window.routes) == ["/posts", "/timeline/{account}"]
    assert [client.name for client in window.clients] == ["192.0.2.50"]
    broken.dispose()


def test_a_signed_crawler_is_billed_even_when_others_spoof_its_user_agent(
    database: Database, meter: Meter
) -> None:
    """Web Bot Auth end to end: the signed crawler's posts go to its organisation as ``signed``; the same
    user agent unsigned, replayed or badly signed is ``spoofed`` and never billed to it."""
    from consentry.metering import identities
    from consentry.metering.webbotauth import SignatureVerifier
    from tests.metering.test_webbotauth import AGENT, RFC_JWK, sign

    with database.write() as session:
        org = service.create_organisation(session, name="OpenAI", mode="meter")
        identities.add_identity(session, ref=org.id, agent=AGENT, jwks={"keys": [RFC_JWK]})
        org_id = org.id
    writer = AccessLogWriter(database, interval=0)
    metrics = MiddlewareMetrics()
    app, _ = make_app(
        meter,
        clock=Clock(T0),
        directory=DatabaseDirectory(database, ttl=60),
        access_log=writer,
        metrics=metrics,
        signatures=SignatureVerifier(authorities=["api.consentry.test"]),
    )
    url = "https://api.consentry.test/posts?n=10"
    signed = {**sign(url, nonce="first"), "user-agent": GPTBOT_UA}
    with TestClient(app, base_url="https://api.consentry.test") as client:
        assert client.get("/posts?n=10", headers=signed).status_code == 200
        assert client.get(
            "/posts?n=10", headers={**sign(url, nonce="second"), "user-agent": GPTBOT_UA}
        ).is_success
        assert client.get("/posts?n=3", headers={"user-agent": GPTBOT_UA}).is_success  # a spoofer
        assert client.get("/posts?n=10", headers=signed).is_success  # a replay of the first request
        expired = sign(url, nonce="third", created=datetime.now(UTC).timestamp() - 3600)
        assert client.get("/posts?n=10", headers={**expired, "user-agent": GPTBOT_UA}).is_success
    assert (metrics.signed_requests, metrics.replayed_signatures, metrics.spoofed_requests) == (2, 1, 3)
    writer.flush()
    with database.read() as session:
        billed = service.statement(
            session,
            organisation=org_id,
            start=T0,
            end=T0 + timedelta(hours=1),
            terms=damages.Terms(threshold=1),
        )
        spoofed = service.statement(
            session,
            organisation="spoofed:openai",
            start=T0,
            end=T0 + timedelta(hours=1),
            terms=damages.Terms(threshold=1),
        )
    assert billed.posts_in_period == 20
    assert billed.windows[0].hours[0].bases == {"signed": 20}
    assert [(b.name, b.posts) for b in billed.windows[0].evidence] == [(AGENT, 20)]
    assert spoofed.posts_in_period == 23
    assert spoofed.windows[0].hours[0].bases == {"spoofed": 23}
    assert {b.name: b.posts for b in spoofed.windows[0].evidence} == {
        "replayed": 10,
        "expired": 10,
        "unsigned": 3,
    }
    csv_text, _ = damages.render_statement(billed, "csv")
    assert csv_text.splitlines()[1].endswith(",signed=20")


def test_the_nonce_of_a_signature_is_claimed_once_across_workers(redis_prefix: str) -> None:
    """Two API workers sharing Redis: a nonce claimed by one is refused by the other."""
    from tests.services import REDIS_URL

    async def run() -> tuple[bool, bool, bool]:
        first, second = RedisMeter(REDIS_URL, prefix=redis_prefix), RedisMeter(REDIS_URL, prefix=redis_prefix)
        until = datetime.now(UTC).timestamp() + 60
        try:
            return (
                await first.claim("agent-key-nonce", until=until),
                await second.claim("agent-key-nonce", until=until),
                await second.claim("another-nonce", until=until),
            )
        finally:
            await first.aclose()
            await second.aclose()

    assert asyncio.run(run()) == (True, False, True)


def test_a_replayed_signature_is_refused_by_the_mode_it_falls_to(
    database: Database, redis_meter: RedisMeter
) -> None:
    """With a shared meter the nonce is claimed with the count, after the endpoint ran: a replay is then
    re-attributed, and refused if its new subject is blocked (the endpoint's body is dropped)."""
    from consentry.metering import identities
    from consentry.metering.webbotauth import SignatureVerifier
    from tests.metering.test_webbotauth import AGENT, RFC_JWK, sign

    with database.write() as session:
        org = service.create_organisation(session, name="OpenAI", mode="meter")
        identities.add_identity(session, ref=org.id, agent=AGENT, jwks={"keys": [RFC_JWK]})
    metrics = MiddlewareMetrics()
    app, calls = make_app(
        redis_meter,
        clock=Clock(T0),
        directory=DatabaseDirectory(database, ttl=60),
        metrics=metrics,
        unregistered_mode="block",
        signatures=SignatureVerifier(authorities=["api.consentry.test"]),
    )
    headers = {**sign("https://api.consentry.test/posts?n=4", nonce="once"), "user-agent": GPTBOT_UA}
    with TestClient(app, base_url="https://api.consentry.test") as client:
        first = client.get("/posts?n=4", headers=headers)
        replay = client.get("/posts?n=4", headers=headers)
    assert first.status_code == 200
    assert replay.status_code == 403 and replay.json()["subject"] == "spoofed:openai"
    assert calls["posts"] == 2  # the replay reached the endpoint; its response was replaced
    assert (metrics.signed_requests, metrics.replayed_signatures) == (1, 1)
    assert asyncio.run(redis_meter.usage(f"org:{org.id}", at=T0)) == 4
