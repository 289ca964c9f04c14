"""The signals routes, mounted on the application the way the platform will mount them."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from protego import Protego

from consentry.metering.attribution import default_crawlers
from consentry.signals.robots import robots_txt, tdmrep
from consentry.signals.router import router


@pytest.fixture
def app(app: FastAPI) -> FastAPI:
    """The application with the signals router mounted (the main app does not mount it yet)."""
    app.include_router(router)
    return app


def test_robots_txt(client: TestClient) -> None:
    response = client.get("/robots.txt")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "max-age" in response.headers["cache-control"]
    assert response.text == robots_txt()
    parser = Protego.parse(response.text)
    url = "http://testserver/v1/platform/posts/1"
    assert parser.can_fetch(url, "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0")
    assert not any(parser.can_fetch(url, crawler.token) for crawler in default_crawlers())
    assert "\nContent-Signal: search=yes, ai-train=no, ai-input=no\n" in response.text


def test_optional_settings(app: FastAPI, client: TestClient) -> None:
    app.state.settings = app.state.settings.model_copy(
        update={"robots_ai_scope": "training", "tdm_policy_url": "https://social.example/tdm-policy"}
    )
    response = client.get("/robots.txt")
    assert response.text == robots_txt(scope="training")
    parser = Protego.parse(response.text)
    assert parser.can_fetch("http://testserver/v1/platform/posts/1", "ChatGPT-User")
    assert not parser.can_fetch("http://testserver/v1/platform/posts/1", "GPTBot")
    rules = client.get("/.well-known/tdmrep.json").json()
    assert rules == tdmrep(policy_url="https://social.example/tdm-policy")
    assert all(rule["tdm-policy"] == "https://social.example/tdm-policy" for rule in rules)


def test_tdmrep_json(client: TestClient) -> None:
    response = client.get("/.well-known/tdmrep.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body == tdmrep()
    assert isinstance(body, list)
    assert all(rule["tdm-reservation"] == 1 and rule["location"].startswith("/") for rule in body)


def test_no_authentication_needed(client: TestClient) -> None:
    for path in ("/robots.txt", "/.well-known/tdmrep.json"):
        assert client.get(path, headers={"Authorization": "Bearer nonsense"}).status_code == 200
