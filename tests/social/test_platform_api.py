"""The platform API end to end, on SQLite and PostgreSQL: every visibility and block rule, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from consentry.auth.service import create_token
from consentry.db import Database
from consentry.metering.service import create_organisation, issue_key
from consentry.social.router import blocked_can_read
from consentry.social.service import create_account

P = "/v1/platform"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def account(database: Database, handle: str, *, protected: bool = False) -> tuple[int, str]:
    """An account (optionally protected) and a token for it."""
    with database.write() as session:
        row = create_account(session, handle=handle, country="US", birth_year=1990, protected=protected)
        return row.id, create_token(session, kind="account", account_id=row.id)


def publish(client: TestClient, token: str, **body: Any) -> int:
    response = client.post(f"{P}/posts", headers=auth(token), json={"text": "hello", **body})
    assert response.status_code == 201, response.json()
    return int(response.json()["id"])


def count(database: Database, table: str) -> int:
    with database.read() as session:
        return int(session.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def counts(database: Database) -> dict[str, int]:
    return {t: count(database, t) for t in ("posts", "likes", "reposts", "follows", "blocks")}


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.json()
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


@pytest.fixture
def strict_blocks(app: FastAPI) -> Iterator[None]:
    """The application with ``blocked_can_read`` switched off."""
    app.dependency_overrides[blocked_can_read] = lambda: False
    yield
    app.dependency_overrides.pop(blocked_can_read, None)


# --- reading: who sees what -------------------------------------------------------------------------


World = tuple[dict[str, str | None], dict[str, int], dict[str, int]]


def _visibility_world(client: TestClient, database: Database) -> World:
    """Two authors (one protected) with a public and a followers-only post each, and every kind of viewer:
    anonymous, a stranger, an approved follower, a pending requester, the author, and a blocked account."""
    open_id, open_token = account(database, "open")
    shy_id, shy_token = account(database, "shy", protected=True)
    _, stranger = account(database, "stranger")
    _, fan = account(database, "fan")
    _, pending = account(database, "pending")
    blocked_id, blocked = account(database, "blocked")
    for target, token in ((open_id, fan), (shy_id, fan), (open_id, blocked), (shy_id, blocked)):
        assert client.post(f"{P}/accounts/{target}/follow", headers=auth(token)).status_code == 200
    assert client.post(f"{P}/accounts/{shy_id}/follow", headers=auth(pending)).json()["state"] == "requested"
    requests = client.get(f"{P}/me/follow-requests", headers=auth(shy_token)).json()
    assert [r["handle"] for r in requests] == ["fan", "blocked", "pending"]
    for r in requests:
        if r["handle"] in ("fan", "blocked"):
            approved = client.post(f"{P}/me/follow-requests/{r['follower_id']}", headers=auth(shy_token))
            assert approved.json()["state"] == "following"
    # the blocks end the blocked account's follows, approved or not
    for token in (open_token, shy_token):
        assert client.post(f"{P}/accounts/{blocked_id}/block", headers=auth(token)).status_code == 200
    posts = {
        "open/public": publish(client, open_token),
        "open/followers": publish(client, open_token, visibility="followers"),
        "shy/public": publish(client, shy_token),
        "shy/followers": publish(client, shy_token, visibility="followers"),
    }
    viewers: dict[str, str | None] = {
        "anonymous": None,
        "stranger": stranger,
        "follower": fan,
        "pending": pending,
        "blocked": blocked,
    }
    return {**viewers, "open": open_token, "shy": shy_token}, posts, {"open": open_id, "shy": shy_id}


VISIBLE = {
    # post: viewers who get 200; everybody else gets 404
    "open/public": {"anonymous", "stranger", "follower", "pending", "blocked", "open", "shy"},
    "open/followers": {"follower", "open"},
    "shy/public": {"follower", "shy"},
    "shy/followers": {"follower", "shy"},
}


def test_who_sees_which_post(client: TestClient, database: Database) -> None:
    tokens, posts, _ = _visibility_world(client, database)
    for name, post_id in posts.items():
        for viewer, token in tokens.items():
            response = client.get(f"{P}/posts/{post_id}", headers=auth(token) if token else {})
            expected = 200 if viewer in VISIBLE[name] else 404
            assert response.status_code == expected, (name, viewer, response.json())
            if expected == 404:
                assert (
                    problem(response, 404)["detail"]
                    == f"post {post_id} does not exist or is not visible to you"
                )


def test_account_pages_show_only_readable_posts(client: TestClient, database: Database) -> None:
    tokens, posts, ids = _visibility_world(client, database)
    for author in ("open", "shy"):
        for viewer, token in tokens.items():
            page = client.get(f"{P}/accounts/{ids[author]}/posts", headers=auth(token) if token else {})
            assert page.status_code == 200
            shown = {p["id"] for p in page.json()["posts"]}
            expected = {posts[n] for n in posts if n.startswith(author) and viewer in VISIBLE[n]}
            assert shown == expected, (author, viewer)
            assert page.json()["complete"] is (viewer in ("follower", author))


def test_blocked_viewers_can_be_kept_from_reading(
    client: TestClient, database: Database, strict_blocks: None
) -> None:
    tokens, posts, ids = _visibility_world(client, database)
    response = client.get(f"{P}/posts/{posts['open/public']}", headers=auth(str(tokens["blocked"])))
    assert "@open has blocked you" in problem(response, 403)["detail"]
    page = client.get(f"{P}/accounts/{ids['open']}/posts", headers=auth(str(tokens["blocked"])))
    assert "@open has blocked you" in problem(page, 403)["detail"]
    for viewer in ("anonymous", "stranger", "follower"):
        token = tokens[viewer]
        assert (
            client.get(f"{P}/posts/{posts['open/public']}", headers=auth(token) if token else {}).status_code
            == 200
        )


def test_deleted_posts_answer_410(client: TestClient, database: Database) -> None:
    author_id, author = account(database, "author")
    _, other = account(database, "other")
    post_id = publish(client, author)
    kept = publish(client, author)
    assert client.delete(f"{P}/posts/{post_id}", headers=auth(other)).status_code == 403
    assert client.delete(f"{P}/posts/{post_id}", headers=auth(author)).status_code == 204
    for headers in ({}, auth(author), auth(other)):
        body = problem(client.get(f"{P}/posts/{post_id}", headers=headers), 410)
        assert body["title"] == "Gone" and body["detail"] == f"post {post_id} was deleted"
    problem(client.delete(f"{P}/posts/{post_id}", headers=auth(author)), 410)
    for action in ("like", "repost"):
        problem(client.post(f"{P}/posts/{post_id}/{action}", headers=auth(other)), 410)
    page = client.get(f"{P}/accounts/{author_id}/posts").json()
    assert [p["id"] for p in page["posts"]] == [kept]
    problem(client.get(f"{P}/posts/999999"), 404)


def test_deactivated_and_deleted_authors(client: TestClient, database: Database, admin_token: str) -> None:
    author_id, author = account(database, "author")
    post_id = publish(client, author)
    client.post(f"/v1/accounts/{author_id}/deactivate", headers=auth(admin_token))
    problem(client.get(f"{P}/posts/{post_id}"), 404)
    problem(client.get(f"{P}/accounts/{author_id}"), 404)
    problem(client.get(f"{P}/accounts/{author_id}/posts"), 404)
    assert client.get(f"{P}/posts/{post_id}", headers=auth(author)).status_code == 200  # still their own
    assert (
        "deactivated"
        in problem(client.post(f"{P}/posts", headers=auth(author), json={"text": "x"}), 403)["detail"]
    )
    client.post(f"/v1/accounts/{author_id}/reactivate", headers=auth(admin_token))
    assert client.get(f"{P}/posts/{post_id}").status_code == 200
    client.delete(f"/v1/accounts/{author_id}", headers=auth(admin_token))
    problem(client.get(f"{P}/posts/{post_id}"), 410)
    problem(client.get(f"{P}/accounts/{author_id}"), 410)
    problem(client.get(f"{P}/accounts/{author_id}/posts"), 410)
    problem(client.post(f"{P}/posts", headers=auth(author), json={"text": "x"}), 401)


# --- blocks -----------------------------------------------------------------------------------------


def test_every_interaction_with_the_blocker_is_refused_with_the_reason(
    client: TestClient, database: Database
) -> None:
    blocker_id, blocker = account(database, "blocker")
    blocked_id, blocked = account(database, "blocked")
    post_id = publish(client, blocker)
    assert (
        client.post(f"{P}/accounts/{blocked_id}/block", headers=auth(blocker)).json()["state"] == "blocking"
    )
    before = counts(database)
    attempts = {
        "like their posts": client.post(f"{P}/posts/{post_id}/like", headers=auth(blocked)),
        "repost their posts": client.post(f"{P}/posts/{post_id}/repost", headers=auth(blocked)),
        "reply to their posts": client.post(
            f"{P}/posts", headers=auth(blocked), json={"text": "hey", "reply_to": post_id}
        ),
        "quote their posts": client.post(
            f"{P}/posts", headers=auth(blocked), json={"text": "hm", "quote_of": post_id}
        ),
        "follow them": client.post(f"{P}/accounts/{blocker_id}/follow", headers=auth(blocked)),
    }
    for action, response in attempts.items():
        assert problem(response, 403)["detail"] == f"@blocker has blocked you: you cannot {action}"
    assert counts(database) == before
    # the blocked account still reads the blocker's public posts (the default)
    assert client.get(f"{P}/posts/{post_id}", headers=auth(blocked)).status_code == 200


def test_the_blocker_must_unblock_before_interacting(client: TestClient, database: Database) -> None:
    _, blocker = account(database, "blocker")
    blocked_id, blocked = account(database, "blocked")
    post_id = publish(client, blocked)
    client.post(f"{P}/accounts/{blocked_id}/block", headers=auth(blocker))
    response = client.post(f"{P}/posts/{post_id}/like", headers=auth(blocker))
    assert problem(response, 403)["detail"] == "you have blocked @blocked: unblock them to like their posts"
    problem(client.post(f"{P}/accounts/{blocked_id}/follow", headers=auth(blocker)), 403)
    unblocked = client.delete(f"{P}/accounts/{blocked_id}/block", headers=auth(blocker)).json()
    assert unblocked == {
        "account_id": unblocked["account_id"],
        "target_id": blocked_id,
        "state": "not_blocking",
        "changed": True,
    }
    assert client.post(f"{P}/posts/{post_id}/like", headers=auth(blocker)).json()["changed"] is True
    assert (
        client.post(f"{P}/posts/{post_id}/like", headers=auth(blocked)).status_code == 200
    )  # both ways lifted


def test_blocking_ends_follows_both_ways_and_is_idempotent(client: TestClient, database: Database) -> None:
    a_id, a = account(database, "a")
    b_id, b = account(database, "b")
    client.post(f"{P}/accounts/{b_id}/follow", headers=auth(a))
    client.post(f"{P}/accounts/{a_id}/follow", headers=auth(b))
    assert count(database, "follows") == 2
    assert client.post(f"{P}/accounts/{b_id}/block", headers=auth(a)).json()["changed"] is True
    assert client.post(f"{P}/accounts/{b_id}/block", headers=auth(a)).json()["changed"] is False
    assert count(database, "follows") == 0 and count(database, "blocks") == 1
    problem(client.post(f"{P}/accounts/{a_id}/block", headers=auth(a)), 422)
    problem(client.post(f"{P}/accounts/{a_id}/follow", headers=auth(a)), 422)
    problem(client.post(f"{P}/accounts/424242/block", headers=auth(a)), 404)


# --- writing: posts, replies, quotes, likes, reposts ------------------------------------------------


def test_post_reply_quote_like_repost(client: TestClient, database: Database) -> None:
    author_id, author = account(database, "author")
    _, fan = account(database, "fan")
    post_id = publish(client, author, media="image")
    reply = client.post(f"{P}/posts", headers=auth(fan), json={"text": "nice", "reply_to": post_id}).json()
    quote = client.post(f"{P}/posts", headers=auth(fan), json={"text": "look", "quote_of": post_id}).json()
    assert (reply["reply_to"], quote["quote_of"]) == (post_id, post_id)
    assert client.post(f"{P}/posts/{post_id}/like", headers=auth(fan)).json()["changed"] is True
    assert client.post(f"{P}/posts/{post_id}/like", headers=auth(fan)).json()["changed"] is False
    assert client.post(f"{P}/posts/{post_id}/repost", headers=auth(fan)).json()["state"] == "reposted"
    shown = client.get(f"{P}/posts/{post_id}").json()
    assert shown["author_handle"] == "author" and shown["media"] == "image"
    assert (shown["likes"], shown["reposts"], shown["replies"]) == (1, 1, 1)
    assert client.delete(f"{P}/posts/{post_id}/like", headers=auth(fan)).json()["changed"] is True
    assert client.delete(f"{P}/posts/{post_id}/repost", headers=auth(fan)).json()["state"] == "not_reposted"
    assert client.get(f"{P}/posts/{post_id}").json()["likes"] == 0
    page = client.get(f"{P}/accounts/{author_id}/posts", params={"limit": 1}).json()
    assert [p["id"] for p in page["posts"]] == [post_id] and page["next_before"] is None


def test_followers_only_posts_can_be_replied_to_but_not_spread(
    client: TestClient, database: Database
) -> None:
    author_id, author = account(database, "author")
    _, fan = account(database, "fan")
    client.post(f"{P}/accounts/{author_id}/follow", headers=auth(fan))
    post_id = publish(client, author, visibility="followers")
    assert (
        client.post(f"{P}/posts", headers=auth(fan), json={"text": "hi", "reply_to": post_id}).status_code
        == 201
    )
    assert client.post(f"{P}/posts/{post_id}/like", headers=auth(fan)).status_code == 200
    before = counts(database)
    detail = problem(client.post(f"{P}/posts/{post_id}/repost", headers=auth(fan)), 403)["detail"]
    assert detail == f"post {post_id} is for @author's followers only: it cannot be reposted"
    quote = client.post(f"{P}/posts", headers=auth(fan), json={"text": "x", "quote_of": post_id})
    assert problem(quote, 403)["detail"].endswith("it cannot be quoted")
    assert counts(database) == before


def test_bad_posts_are_refused_and_nothing_is_written(client: TestClient, database: Database) -> None:
    author_id, author = account(database, "author")
    live = publish(client, author)
    gone = publish(client, author)
    client.delete(f"{P}/posts/{gone}", headers=auth(author))
    assert client.post(f"{P}/posts", headers=auth(author), json={"text": "x" * 4000}).status_code == 201
    before = counts(database)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"text": "x" * 4001}, 422, "text"),
        ({"text": "   "}, 422, "text"),
        ({"text": "hi", "visibility": "friends"}, 422, "visibility"),
        ({"text": "hi", "media": "gif"}, 422, "media"),
        ({"text": "hi", "reply_to": 999999}, 404, "reply_to"),
        ({"text": "hi", "reply_to": gone}, 410, "reply_to"),
        ({"text": "hi", "quote_of": 999999}, 404, "quote_of"),
        ({"text": "hi", "quote_of": gone}, 410, "quote_of"),
        ({"text": "hi", "reply_to": live, "author_id": 1}, 422, "author_id"),
        ({}, 422, "text"),
    ]
    for body, status, field in cases:
        response = client.post(f"{P}/posts", headers=auth(author), json=body)
        assert problem(response, status)["field"] == field, body
    assert (
        "4,000 characters"
        in client.post(f"{P}/posts", headers=auth(author), json={"text": "é" * 4001}).json()["detail"]
    )
    assert counts(database) == before
    del author_id


def test_tokens(client: TestClient, database: Database, admin_token: str) -> None:
    _, token = account(database, "ada")
    post_id = publish(client, token)
    problem(client.post(f"{P}/posts", json={"text": "x"}), 401)
    problem(client.post(f"{P}/posts", headers=auth("cst_nope"), json={"text": "x"}), 401)
    problem(client.get(f"{P}/posts/{post_id}", headers=auth("cst_nope")), 401)
    problem(client.post(f"{P}/posts", headers=auth(admin_token), json={"text": "x"}), 403)
    assert (
        client.get(f"{P}/posts/{post_id}", headers=auth(admin_token)).status_code == 200
    )  # reads as anonymous
    problem(client.get(f"{P}/accounts/1/posts", params={"limit": 0}), 422)


def test_an_organisation_key_reads_as_an_anonymous_reader(client: TestClient, database: Database) -> None:
    # docs/metering.md offers `Authorization: Bearer cso_...` to crawlers: the key names who reads (for
    # the meter), never an account, so it reads what anybody may read and cannot act
    ada, token = account(database, "ada")
    public = publish(client, token)
    followers = publish(client, token, visibility="followers")
    with database.write() as session:
        organisation = create_organisation(session, name="crawler-co")
        _, key = issue_key(session, ref=organisation.id)
    assert client.get(f"{P}/posts/{public}", headers=auth(key)).status_code == 200
    problem(client.get(f"{P}/posts/{followers}", headers=auth(key)), 404)
    listed = client.get(f"{P}/accounts/{ada}/posts", headers=auth(key))
    assert listed.status_code == 200 and [p["id"] for p in listed.json()["posts"]] == [public]
    problem(client.post(f"{P}/posts", headers=auth(key), json={"text": "x"}), 401)


# --- protected accounts -----------------------------------------------------------------------------


def test_protected_accounts_approve_their_followers(client: TestClient, database: Database) -> None:
    shy_id, shy = account(database, "shy", protected=True)
    fan_id, fan = account(database, "fan")
    _, other = account(database, "other")
    post_id = publish(client, shy)
    assert client.post(f"{P}/accounts/{shy_id}/follow", headers=auth(fan)).json()["state"] == "requested"
    assert client.post(f"{P}/accounts/{shy_id}/follow", headers=auth(other)).json()["state"] == "requested"
    problem(client.get(f"{P}/posts/{post_id}", headers=auth(fan)), 404)
    problem(client.post(f"{P}/posts/{post_id}/like", headers=auth(fan)), 404)
    assert client.post(f"{P}/me/follow-requests/{fan_id}", headers=auth(shy)).status_code == 200
    assert client.get(f"{P}/posts/{post_id}", headers=auth(fan)).status_code == 200
    other_id = client.get(f"{P}/me/follow-requests", headers=auth(shy)).json()[0]["follower_id"]
    assert (
        client.delete(f"{P}/me/follow-requests/{other_id}", headers=auth(shy)).json()["state"] == "declined"
    )
    problem(client.delete(f"{P}/me/follow-requests/{other_id}", headers=auth(shy)), 404)
    assert client.get(f"{P}/me/follow-requests", headers=auth(shy)).json() == []
    problem(client.get(f"{P}/posts/{post_id}", headers=auth(other)), 404)
    assert client.delete(f"{P}/accounts/{shy_id}/follow", headers=auth(fan)).json()["changed"] is True
    problem(client.get(f"{P}/posts/{post_id}", headers=auth(fan)), 404)


# --- assistant --------------------------------------------------------------------------------------


def test_chat_records_an_interaction_from_eligible_posts(client: TestClient, database: Database) -> None:
    _, ada = account(database, "ada")
    author_id, author = account(database, "author")
    _, shy = account(database, "shy", protected=True)
    _, hater = account(database, "hater")
    public = publish(client, author, text="The sourdough at the corner bakery is superb")
    publish(client, author, text="Sourdough secrets for followers", visibility="followers")
    publish(client, shy, text="My sourdough starter is alive")
    deleted = publish(client, author, text="Old sourdough news")
    client.delete(f"{P}/posts/{deleted}", headers=auth(author))
    blocker_post = publish(client, hater, text="sourdough is overrated")
    hater_id = client.get(f"{P}/posts/{blocker_post}").json()["author_id"]
    client.post(f"{P}/accounts/{hater_id}/block", headers=auth(ada))

    response = client.post(f"{P}/assistant/chat", headers=auth(ada), json={"prompt": "What about SOURDOUGH?"})
    assert response.status_code == 201
    chat = response.json()
    assert chat["source_post_ids"] == [public]
    assert f"Post {public}:" in chat["response"] and chat["prompt"] == "What about SOURDOUGH?"
    again = client.post(
        f"{P}/assistant/chat", headers=auth(ada), json={"prompt": "What about SOURDOUGH?"}
    ).json()
    assert again["response"] == chat["response"]  # deterministic
    none = client.post(f"{P}/assistant/chat", headers=auth(ada), json={"prompt": "xylophones?"}).json()
    assert none["source_post_ids"] == [] and "could not find" in none["response"]

    history = client.get(f"{P}/assistant/interactions", headers=auth(ada)).json()
    assert [h["id"] for h in history] == [none["id"], again["id"], chat["id"]]
    assert client.delete(f"{P}/assistant/interactions/{chat['id']}", headers=auth(author)).status_code == 404
    assert client.delete(f"{P}/assistant/interactions/{chat['id']}", headers=auth(ada)).status_code == 204
    problem(client.delete(f"{P}/assistant/interactions/{chat['id']}", headers=auth(ada)), 410)
    assert len(client.get(f"{P}/assistant/interactions", headers=auth(ada)).json()) == 2
    assert count(database, "assistant_interactions") == 3

    before = count(database, "assistant_interactions")
    problem(client.post(f"{P}/assistant/chat", headers=auth(ada), json={"prompt": "x" * 4001}), 422)
    problem(client.post(f"{P}/assistant/chat", json={"prompt": "hi"}), 401)
    assert count(database, "assistant_interactions") == before
    del author_id
