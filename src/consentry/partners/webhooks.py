"""Standard Webhooks signatures: what the worker sends, and how a receiver checks it.

Every request carries three headers (https://www.standardwebhooks.com)::

    webhook-id:        msg_8f14e45fceea167a5a36dedd4bea2543   (the outbox message id, the same on every retry)
    webhook-timestamp: 1795327200                              (unix seconds of this attempt)
    webhook-signature: v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=

The signature is the standard base64 of ``HMAC-SHA256(key, f"{id}.{timestamp}.{body}")`` where ``key`` is
the base64-decoded part of the recipient's ``whsec_...`` secret and ``body`` the exact request body. Several
signatures may be sent at once, separated by spaces (while a secret is being rotated); a receiver accepts
the request if any ``v1`` signature matches one of its secrets.

``verify`` is the receiving side, for examples and tests; partners would normally use the
``standardwebhooks`` package of their language, which this implementation is tested against.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SIGNATURE_VERSION = "v1"
TOLERANCE_SECONDS = 5 * 60
"""How far a ``webhook-timestamp`` may be from the receiver's clock (the Standard Webhooks default)."""
HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"


class SignatureError(ValueError):
    """A webhook request that does not verify: a header is missing or malformed, its timestamp is outside
    the tolerance, or no signature matches."""


def secret_key(secret: str | bytes) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (raw bytes are taken as the key itself)."""
    if isinstance(secret, bytes):
        key = secret
    else:
        encoded = secret.removeprefix(SECRET_PREFIX)
        try:
            key = base64.b64decode(encoded.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as error:
            raise ValueError(f"a webhook secret is '{SECRET_PREFIX}' and standard base64") from error
    if not key:
        raise ValueError("a webhook secret must not be empty")
    return key


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """The request body of a payload: compact JSON in UTF-8, the same bytes on every retry."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _digest(key: bytes, message_id: str, timestamp: int, body: bytes) -> bytes:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def signature(secret: str | bytes, *, message_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``body`` sent as ``message_id`` at ``timestamp``."""
    digest = _digest(secret_key(secret), message_id, timestamp, body)
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def sign(
    secrets: str | bytes | Sequence[str | bytes],
    *,
    message_id: str,
    body: bytes,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt to send ``body``.

    ``secrets``: one secret, or several (new and old while rotating): one signature each, space-separated.
    ``timestamp`` defaults to now (unix seconds): each attempt is signed anew.
    """
    if isinstance(secrets, str | bytes):
        secrets = [secrets]
    if not secrets:
        raise ValueError("at least one webhook secret is needed to sign")
    if not message_id or any(c in message_id for c in ". \r\n"):
        raise ValueError("a webhook id must be non-empty, without dots, spaces or line breaks")
    at = int(time.time()) if timestamp is None else timestamp
    signatures = " ".join(signature(s, message_id=message_id, timestamp=at, body=body) for s in secrets)
    return {HEADER_ID: message_id, HEADER_TIMESTAMP: str(at), HEADER_SIGNATURE: signatures}


def verify(
    secrets: str | bytes | Sequence[str | bytes],
    body: bytes | str,
    headers: Mapping[str, str],
    *,
    tolerance_seconds: float = TOLERANCE_SECONDS,
    now: float | None = None,
) -> Any:
    """Check a received webhook and return its parsed JSON body; ``SignatureError`` if it does not verify.

    ``headers`` may use any case. A request verifies when its timestamp is within ``tolerance_seconds`` of
    ``now`` and one of its ``v1`` signatures matches one of ``secrets`` (compared in constant time).
    Receivers should also drop a ``webhook-id`` they have already processed: retries repeat it.
    """
    if isinstance(secrets, str | bytes):
        secrets = [secrets]
    raw = body.encode() if isinstance(body, str) else body
    lower = {name.lower(): value for name, value in headers.items()}
    message_id = lower.get(HEADER_ID)
    stamp = lower.get(HEADER_TIMESTAMP)
    signatures = lower.get(HEADER_SIGNATURE)
    if not (message_id and stamp and signatures):
        raise SignatureError(f"missing {HEADER_ID}, {HEADER_TIMESTAMP} or {HEADER_SIGNATURE} header")
    try:
        timestamp = int(stamp)
    except ValueError as error:
        raise SignatureError(f"{HEADER_TIMESTAMP} is not unix seconds: {stamp!r}") from error
    clock = time.time() if now is None else now
    if abs(clock - timestamp) > tolerance_seconds:
        raise SignatureError(f"{HEADER_TIMESTAMP} {timestamp} is more than {tolerance_seconds:g} s off")
    expected = [_digest(secret_key(s), message_id, timestamp, raw) for s in secrets]
    for candidate in signatures.split(" "):
        version, _, encoded = candidate.partition(",")
        if version != SIGNATURE_VERSION:
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            continue
        if any(hmac.compare_digest(given, digest) for digest in expected):
            try:
                return json.loads(raw)
            except ValueError as error:
                raise SignatureError("the signed body is not JSON") from error
    raise SignatureError("no signature matches")
