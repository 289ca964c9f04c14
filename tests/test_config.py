"""One operator URL: the configured one, else where the server listens."""

from __future__ import annotations

from pathlib import Path

import pytest

from consentry.config import DEFAULT_OPERATOR_URL, Settings, listen_url


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("127.0.0.1", 8001, "http://127.0.0.1:8001"),
        ("0.0.0.0", 9000, "http://127.0.0.1:9000"),
        ("::", 9000, "http://[::1]:9000"),
        ("::1", 8000, "http://[::1]:8000"),
        ("localhost", 8080, "http://localhost:8080"),
    ],
)
def test_listen_url_is_where_a_local_client_reaches_the_server(host: str, port: int, url: str) -> None:
    assert listen_url(host, port) == url


def test_operator_url_follows_the_listening_address_unless_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONSENTRY_OPERATOR_URL", raising=False)
    monkeypatch.delenv("CONSENTRY_LISTEN_URL", raising=False)
    assert Settings(home=tmp_path).operator_url == DEFAULT_OPERATOR_URL
    monkeypatch.setenv("CONSENTRY_LISTEN_URL", "http://127.0.0.1:8001")
    listening = Settings(home=tmp_path)
    assert listening.operator_url == "http://127.0.0.1:8001"
    assert listening.resolved_origin == "127.0.0.1/consentry/consent-log"
    monkeypatch.setenv("CONSENTRY_OPERATOR_URL", "https://consent.example.com")
    assert Settings(home=tmp_path).operator_url == "https://consent.example.com"
