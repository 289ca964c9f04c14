"""A release reaches a partner, its author opts out through the API, and the partner hears of it, deletes and
acknowledges, through a receiver that is down for a while: every part real (the dataset builder, the API,
the worker on its thread, an HTTP receiver verifying with ``standardwebhooks``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from consentry.auth.service import create_token
from consentry.config import Settings
from consentry.consent.service import ConsentContext
from consentry.db import Database, utcnow
from consentry.partners import revocations, service
from consentry.partners.models import Delivery, OutboxMessage
from consentry.partners.worker import start_in_thread
from consentry.social.seed import seed_from_lake
from consentry.transparency.note import parse_vkey
from consentry.transparency.verify import Trust, verify_checkpoint
from tests.datasets.conftest import CATEGORIES, build
from tests.datasets.conftest import scenario_lake as scenario_lake
from tests.partners.receiver import Receiver

PARTNER = "acme-ai"
AUTHOR = 1
"""An author of the scenario lake with posts in the partner's release."""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    instance = Receiver({})  # a free port with nothing listening until the test starts it
    yield instance
    instance.stop()


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def outbox(database: Database) -> dict[str, tuple[str, int]]:
    """Every queued message: id -> (status, attempts)."""
    with database.read() as session:
        rows = session.execute(select(OutboxMessage.message_id, OutboxMessage.status, OutboxMessage.attempts))
        return {message_id: (status, attempts) for message_id, status, attempts in rows}


def failed_attempts(database: Database) -> int:
    with database.read() as session:
        return len(list(session.scalars(select(Delivery.id).where(Delivery.status_code.is_(None)))))


def test_an_opt_out_reaches_the_partner_through_a_receiver_outage_and_is_acknowledged(
    database: Database,
    ctx: ConsentContext,
    client: TestClient,
    admin_token: str,
    settings: Settings,
    scenario_lake: Path,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    revocations.CACHE.clear()
    seed_from_lake(database, scenario_lake, ctx=ctx)  # the platform's accounts, posts and choices
    admin = {"Authorization": f"Bearer {admin_token}"}

    # The operator registers the partner with its receiver; Consentry generates the signing secret.
    response = client.post(
        "/v1/admin/partners",
        headers=admin,
        json={
            "name": PARTNER,
            "purposes": ["train-ai"],
            "categories": list(CATEGORIES),
            "webhook_url": receiver.url(PARTNER),
        },
    )
    assert response.status_code == 201, response.text
    secret = response.json()["webhook_secret"]
    assert secret.startswith("whsec_")
    response = client.post(f"/v1/admin/partners/{PARTNER}/keys", headers=admin, json={"label": "e2e"})
    assert response.status_code == 201, response.text
    partner = {"Authorization": f"Bearer {response.json()['key']}"}

    # A release goes to the partner, which sees it in its API.
    release = build(
        database, ctx, scenario_lake, tmp_path / "release", recipient=PARTNER, categories=CATEGORIES
    )
    listed = client.get("/v1/partner/releases", headers=partner)
    assert [r["id"] for r in listed.json()] == [release.id]

    lake_posts = pq.read_table(scenario_lake / "posts", columns=["post_id", "author_id"]).to_pylist()
    released = set(
        pq.read_table(Path(release.path) / "data" / "posts", columns=["id"]).column("id").to_pylist()
    )
    expected_posts = {row["post_id"] for row in lake_posts if row["author_id"] == AUTHOR} & released
    assert expected_posts, "the scenario should put some of the author's posts in the release"

    fast = settings.model_copy(
        update={
            "webhook_max_attempts": 1000,
            "webhook_backoff_base_seconds": 0.02,
            "webhook_backoff_cap_seconds": 0.05,
            "webhook_timeout_seconds": 5.0,
        }
    )
    with start_in_thread(database, fast, poll_seconds=0.02) as worker:
        # The author opts out of third-party use through the API, on a phone, while the receiver is down.
        with database.write() as session:
            token = create_token(session, kind="account", account_id=AUTHOR, label="e2e")
        response = client.put(
            "/v1/me/settings",
            headers={"Authorization": f"Bearer {token}", "X-Consentry-Client": "android"},
            json={"settings": {"third_party_sharing": "deny"}},
        )
        assert response.status_code == 200, response.text

        queued = outbox(database)
        assert queued, "the opt-out queued webhooks in its own transaction"
        wait_for(lambda: failed_attempts(database) >= 2 * len(queued), "attempts against the closed port")
        assert {status for status, _ in outbox(database).values()} == {"pending"}
        assert receiver.stats.requests == 0

        # The receiver comes back; everything queued is delivered, once.
        receiver.add(PARTNER, secret)
        receiver.start()
        wait_for(
            lambda: {s for s, _ in outbox(database).values()} == {"delivered"}, "delivery after recovery"
        )
        assert worker.alive

    assert set(receiver.processed) == set(queued)
    assert receiver.stats.rejected == 0 and receiver.stats.duplicates == 0
    assert all(r.verified for r in receiver.requests)

    # The webhooks name the records; they are the partner's open revocations in its feed.
    notices = [payload["data"] for payload in receiver.processed.values()]
    assert {p["release"] for p in notices} == {release.id}
    assert {p["reason"] for p in notices} == {"opt_out"}
    by_category = {p["category"]: set(p["record_ids"]) for p in notices}
    assert by_category["posts"] == expected_posts
    feed = client.get("/v1/partner/revocations", headers=partner, params={"acknowledged": "false"}).json()
    # the page cites the ledger's latest checkpoint, signed by the log (the opt-outs are in its tree)
    log_key = client.get("/.well-known/consentry/checkpoint-key").text.strip()
    cited = verify_checkpoint(feed["checkpoint"]["checkpoint"], Trust(parse_vkey(log_key)))
    assert feed["checkpoint"]["log_key"] == log_key and cited.checkpoint.size == feed["checkpoint"]["size"]
    assert {item["id"]: set(item["record_ids"]) for item in feed["items"]} == {
        p["id"]: set(p["record_ids"]) for p in notices
    }
    later = utcnow() + timedelta(hours=100)  # past every 72-hour deadline
    with database.read() as session:
        assert [p.partner for p in service.overdue_report(session, now=later).partners] == [PARTNER]

    # The partner deletes the records and acknowledges each revocation (a repeat changes nothing).
    for notice in notices:
        attestation = {"deleted_at": utcnow().isoformat(), "method": "hard delete from the training store"}
        url = f"/v1/partner/revocations/{notice['id']}/ack"
        first = client.post(url, headers=partner, json=attestation)
        assert first.status_code == 200, first.text
        again = client.post(url, headers=partner, json=attestation)
        assert again.json()["repeated"] is True

    report = client.get("/v1/admin/partners/overdue", headers=admin)
    assert report.status_code == 200 and report.json()["partners"] == []
    with database.read() as session:  # and still empty once every deadline has passed
        assert service.overdue_report(session, now=later).partners == []
    still_open = client.get("/v1/partner/revocations", headers=partner, params={"acknowledged": "false"})
    assert still_open.json()["items"] == []
