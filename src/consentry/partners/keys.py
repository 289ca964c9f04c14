"""Secrets of the partners domain: API keys (``cpk_``) and webhook signing secrets (``whsec_``).

An API key is shown once, when it is created; only its SHA-256 is stored, with a short prefix that
identifies it in listings. A webhook secret follows the Standard Webhooks form: ``whsec_`` and the
standard base64 of 24 to 64 random bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets

from consentry.errors import InvalidInput

KEY_PREFIX = "cpk_"
KEY_BYTES = 32
PREFIX_CHARS = 12
"""Characters of a key kept in the clear (``cpk_`` and 8 more) to tell keys apart in listings."""
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SECRET_BYTES = 32
SECRET_BYTES_RANGE = (24, 64)


def new_key() -> str:
    """A fresh partner API key."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def hash_key(key: str) -> str:
    """The stored form of a key (hex SHA-256)."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_prefix(key: str) -> str:
    """The part of a key shown in listings."""
    return key[:PREFIX_CHARS]


def new_webhook_secret() -> str:
    """A fresh webhook signing secret: ``whsec_`` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def check_webhook_secret(secret: str, *, field: str = "webhook_secret") -> str:
    """A webhook secret as given, if it is ``whsec_`` and standard base64 of 24 to 64 bytes."""
    low, high = SECRET_BYTES_RANGE
    message = f"the webhook secret must be '{SECRET_PREFIX}' followed by the base64 of {low} to {high} bytes"
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise InvalidInput(message, field=field)
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        raw = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as error:
        raise InvalidInput(message + " (not standard base64)", field=field) from error
    if not low <= len(raw) <= high:
        raise InvalidInput(message + f" (it decodes to {len(raw)} bytes)", field=field)
    return secret
