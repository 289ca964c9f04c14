"""Standard Webhooks signatures: ours verify with the ``standardwebhooks`` package, and tampering fails."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from consentry.partners.keys import new_webhook_secret
from consentry.partners.webhooks import (
    SignatureError,
    encode_body,
    secret_key,
    sign,
    signature,
    verify,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks specification's example secret
PAYLOAD = {"type": "ping", "timestamp": "2026-11-22T05:00:00+00:00", "data": {"partner": "acme", "n": 1}}


def test_signature_verifies_with_the_standardwebhooks_package() -> None:
    body = encode_body(PAYLOAD)
    headers = sign(SECRET, message_id="msg_1", body=body)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == "msg_1"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(SECRET).verify(body, headers) == PAYLOAD
    assert verify(SECRET, body, headers) == PAYLOAD


def test_the_same_signature_as_the_package_computes() -> None:
    """HMAC-SHA256 over ``{id}.{timestamp}.{body}`` with the base64-decoded secret, byte for byte."""
    body = encode_body(PAYLOAD)
    at = 1_795_000_000
    ours = signature(SECRET, message_id="msg_2", timestamp=at, body=body)
    theirs = Webhook(SECRET).sign("msg_2", datetime.fromtimestamp(at, tz=UTC), body.decode())
    assert ours == theirs


@given(
    message_id=st.from_regex(r"msg_[a-z0-9]{1,40}", fullmatch=True),
    data=st.dictionaries(st.text(max_size=10), st.text(max_size=30) | st.integers(), max_size=5),
    raw=st.binary(min_size=24, max_size=64),
)
def test_any_message_verifies_both_ways(message_id: str, data: dict[str, object], raw: bytes) -> None:
    secret = "whsec_" + base64.b64encode(raw).decode()
    body = encode_body({"type": "revocation.created", "timestamp": "t", "data": data})
    headers = sign(secret, message_id=message_id, body=body)
    assert Webhook(secret).verify(body, headers)["data"] == data
    # the library signs the same id and timestamp (the clock may pass a second boundary after sign())
    at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=UTC)
    library = Webhook(secret).sign(message_id, at, body.decode())
    theirs = headers | {"webhook-signature": library}
    assert verify(secret, body, theirs)["data"] == data


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda b, h: (b.replace(b'"n":1', b'"n":2'), h), id="body"),
        pytest.param(lambda b, h: (b, h | {"webhook-id": "msg_other"}), id="id"),
        pytest.param(
            lambda b, h: (b, h | {"webhook-timestamp": str(int(h["webhook-timestamp"]) - 1)}), id="timestamp"
        ),
        pytest.param(
            lambda b, h: (b, h | {"webhook-signature": h["webhook-signature"][:-6] + "AAAAA="}),
            id="signature",
        ),
        pytest.param(
            lambda b, h: (b, h | {"webhook-signature": h["webhook-signature"].replace("v1,", "v2,")}),
            id="version",
        ),
    ],
)
def test_tampering_is_rejected_by_the_package_and_by_verify(tamper) -> None:  # type: ignore[no-untyped-def]
    body = encode_body(PAYLOAD)
    headers = sign(SECRET, message_id="msg_3", body=body)
    bad_body, bad_headers = tamper(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(bad_body, bad_headers)
    with pytest.raises(SignatureError):
        verify(SECRET, bad_body, bad_headers)


def test_another_secret_is_rejected() -> None:
    body = encode_body(PAYLOAD)
    headers = sign(new_webhook_secret(), message_id="msg_4", body=body)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, headers)
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(SECRET, body, headers)


def test_several_signatures_while_a_secret_is_rotated() -> None:
    """Signed with the new and the old secret: a receiver holding either one accepts the request."""
    new, old = new_webhook_secret(), SECRET
    body = encode_body(PAYLOAD)
    headers = sign([new, old], message_id="msg_5", body=body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (new, old):
        assert Webhook(secret).verify(body, headers) == PAYLOAD
        assert verify(secret, body, headers) == PAYLOAD
    assert verify([new_webhook_secret(), old], body, headers) == PAYLOAD
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(body, headers)


def test_old_or_future_timestamps_are_rejected() -> None:
    body = encode_body(PAYLOAD)
    now = int(time.time())
    for at in (now - 301, now + 301):
        headers = sign(SECRET, message_id="msg_6", body=body, timestamp=at)
        with pytest.raises(WebhookVerificationError):
            Webhook(SECRET).verify(body, headers)
        with pytest.raises(SignatureError, match="off"):
            verify(SECRET, body, headers)
        assert verify(SECRET, body, headers, now=at) == PAYLOAD


def test_missing_or_malformed_headers() -> None:
    body = encode_body(PAYLOAD)
    headers = sign(SECRET, message_id="msg_7", body=body)
    for name in headers:
        with pytest.raises(SignatureError, match="missing"):
            verify(SECRET, body, {k: v for k, v in headers.items() if k != name})
    with pytest.raises(SignatureError, match="unix seconds"):
        verify(SECRET, body, headers | {"webhook-timestamp": "yesterday"})
    with pytest.raises(SignatureError, match="no signature"):
        verify(SECRET, body, headers | {"webhook-signature": "v1,not base64!"})
    upper = {k.upper(): v for k, v in headers.items()}
    assert verify(SECRET, body.decode(), upper) == PAYLOAD


def test_secrets_and_ids() -> None:
    assert secret_key(SECRET) == base64.b64decode(SECRET.removeprefix("whsec_"))
    assert secret_key(b"raw key") == b"raw key"
    for bad in ("whsec_not base64!", "whsec_", b""):
        with pytest.raises(ValueError, match="webhook secret"):
            secret_key(bad)
    for bad_id in ("", "msg.1", "msg 1"):
        with pytest.raises(ValueError, match="webhook id"):
            sign(SECRET, message_id=bad_id, body=b"{}")
    with pytest.raises(ValueError, match="at least one"):
        sign([], message_id="msg_8", body=b"{}")


def test_body_is_compact_utf8_json_and_stable() -> None:
    payload = {"type": "ping", "data": {"name": "Zoë", "ids": [1, 2]}}
    body = encode_body(payload)
    assert body == '{"type":"ping","data":{"name":"Zoë","ids":[1,2]}}'.encode()
    assert encode_body(payload) == body
