"""The assembled service: platform reads carry authors' AI signals and are metered per organisation."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from consentry.db import Database
from consentry.metering import service as metering
from tests.conftest import make_account


def post(client: TestClient, token: str, text: str) -> int:
    response = client.post(
        "/v1/platform/posts",
        json={"text": text, "visibility": "public"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code in (200, 201), response.text
    return int(response.json()["id"])


def test_reads_carry_signals_and_are_metered(app: FastAPI, database: Database) -> None:
    with database.write() as session:
        metering.create_organisation(session, name="Blocked Labs", mode="block")
        metering.create_organisation(session, name="Reader Co", mode="meter")
        _, blocked_key = metering.issue_key(session, ref="Blocked Labs")
        _, reader_key = metering.issue_key(session, ref="Reader Co")
    us_id, us_token = make_account(database, handle="us_author", country="US")
    _, de_token = make_account(database, handle="de_author", country="DE")
    with TestClient(app) as client:
        us_posts = [post(client, us_token, f"hello {i}") for i in range(3)]
        de_post = post(client, de_token, "hallo")

        allowed = client.get(f"/v1/platform/posts/{us_posts[0]}")
        assert allowed.headers["content-usage"] == "train-ai=y, ai-use=y"
        assert "x-robots-tag" not in allowed.headers
        denied = client.get(f"/v1/platform/posts/{de_post}")  # EEA default: opted out
        assert denied.headers["content-usage"] == "train-ai=n, ai-use=n"
        assert denied.headers["x-robots-tag"] == "noai, noimageai"
        client.put(
            "/v1/me/settings",
            headers={"Authorization": f"Bearer {us_token}"},
            json={"settings": {"third_party_sharing": "deny"}},
        )
        assert (
            client.get(f"/v1/platform/posts/{us_posts[0]}").headers["content-usage"] == "train-ai=n, ai-use=n"
        )

        refused = client.get(f"/v1/platform/posts/{us_posts[0]}", headers={"X-Consentry-Key": blocked_key})
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        page = client.get(f"/v1/platform/accounts/{us_id}/posts", headers={"X-Consentry-Key": reader_key})
        assert page.status_code == 200 and len(page.json()["posts"]) == 3
        assert "ratelimit" in page.headers and "x-consentry-posts" not in page.headers
        assert (
            client.get(
                "/v1/me/settings",
                headers={"Authorization": f"Bearer {us_token}", "X-Consentry-Key": blocked_key},
            ).status_code
            == 200
        )
    with database.read() as session:  # the access log was flushed on shutdown
        served = session.execute(
            sa.text(
                "SELECT o.name, sum(a.posts) FROM access_log a "
                "JOIN organisations o ON o.id = a.organisation_id GROUP BY o.name ORDER BY o.name"
            )
        ).all()
    assert served == [("Reader Co", 3)]


def test_the_assistant_quotes_only_authors_who_allow_real_time_use(app: FastAPI, database: Database) -> None:
    _, asker = make_account(database, handle="asker", country="US")
    _, keen = make_account(database, handle="keen", country="US")
    _, shy = make_account(database, handle="shy", country="US")
    _, eu = make_account(database, handle="eu_author", country="FR")  # opt-in region: default deny
    with TestClient(app) as client:
        keen_post = post(client, keen, "Sourdough pizza is the best pizza")
        shy_post = post(client, shy, "My pizza recipe, please do not quote me")
        eu_post = post(client, eu, "Pizza in Naples tastes different")
        client.put(
            "/v1/me/settings",
            headers={"Authorization": f"Bearer {shy}"},
            json={"settings": {"assistant_realtime": "deny"}},
        )

        def sources() -> list[int]:
            answer = client.post(
                "/v1/platform/assistant/chat",
                json={"prompt": "Tell me about pizza"},
                headers={"Authorization": f"Bearer {asker}"},
            )
            assert answer.status_code in (200, 201), answer.text
            return list(answer.json()["source_post_ids"])

        assert sources() == [keen_post]
        client.put(
            "/v1/me/settings",
            headers={"Authorization": f"Bearer {eu}"},
            json={"settings": {"assistant_realtime": "allow"}},
        )
        assert sorted(sources()) == sorted([keen_post, eu_post])
        assert shy_post not in sources()
