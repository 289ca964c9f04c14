"""Signed consent receipts (Ed25519), in the spirit of the Kantara Consent Receipt.

A receipt is ``{"receipt": {...}, "signature": {"alg": "EdDSA", "kid": ..., "value": ...}}``; the
signature covers the canonical JSON of ``receipt``. Anyone holding the operator's public key (served as a
JWK at ``/.well-known/consentry/receipt-key``) can verify it offline, and can recompute the event's chain
hash from ``prev_hash`` and the event document it carries.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consentry.consent.catalog import Setting
from consentry.consent.ledger import EventRecord, canonical_json, chain_hash, document_of
from consentry.errors import IntegrityFailure, InvalidInput

RECEIPT_VERSION = "consentry-receipt/1"
KEY_FILE = "receipt-key.pem"
PUBLIC_FILE = "receipt-key.jwk.json"


def b64url(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of ``b64url``."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    """The public key as an OKP JWK with its RFC 7638 thumbprint as ``kid``."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = b64url(raw)
    thumbprint = b64url(hashlib.sha256(canonical_json({"crv": "Ed25519", "kty": "OKP", "x": x})).digest())
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": thumbprint, "alg": "EdDSA", "use": "sig"}


def key_from_jwk(jwk: Any) -> Ed25519PublicKey:
    """An Ed25519 public key from a JWK object."""
    if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "x" not in jwk:
        raise InvalidInput("not an Ed25519 OKP JWK", field="key")
    try:
        return Ed25519PublicKey.from_public_bytes(b64url_decode(str(jwk["x"])))
    except ValueError as error:
        raise InvalidInput(f"bad public key: {error}", field="key") from error


@dataclass
class Signer:
    """The operator's receipt-signing key."""

    private_key: Ed25519PrivateKey

    @functools.cached_property
    def jwk(self) -> dict[str, str]:
        """The public half, as a JWK (computed once: every receipt names its ``kid``)."""
        return public_jwk(self.private_key.public_key())

    def sign(self, receipt: dict[str, Any]) -> dict[str, Any]:
        """Wrap ``receipt`` with an Ed25519 signature over its canonical JSON."""
        signature = self.private_key.sign(canonical_json(receipt))
        return {
            "receipt": receipt,
            "signature": {"alg": "EdDSA", "kid": self.jwk["kid"], "value": b64url(signature)},
        }


def load_or_create_signer(home: Path) -> Signer:
    """The key pair in ``home``, created (private key mode 0600) on first use."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / KEY_FILE
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise IntegrityFailure(f"{path} does not hold an Ed25519 private key")
        signer = Signer(key)
    else:
        signer = Signer(Ed25519PrivateKey.generate())
        pem = signer.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        os.replace(tmp, path)
    (home / PUBLIC_FILE).write_text(json.dumps(signer.jwk, indent=2) + "\n", "utf-8")
    return signer


def build_receipt(
    *,
    event: EventRecord,
    setting: Setting,
    jurisdiction: str,
    operator_name: str,
    operator_url: str,
    policy_title: str | None,
) -> dict[str, Any]:
    """The unsigned receipt of one ledger event (deterministic: the same event gives the same receipt)."""
    document = document_of(event)
    return {
        "version": RECEIPT_VERSION,
        "receipt_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"consentry:{event.hash}")),
        "issued_at": document["recorded_at"],
        "jurisdiction": jurisdiction,
        "controller": {"name": operator_name, "url": operator_url},
        "public_key_url": operator_url.rstrip("/") + "/.well-known/consentry/receipt-key",
        "subject": event.subject_key,
        "collection_method": event.client,
        "consent_type": "explicit" if event.source == "user" else event.source,
        "service": {
            "setting": setting.key,
            "description": setting.label,
            "recipient": setting.recipient,
            "purposes": list(setting.purposes),
            "categories": list(setting.categories),
        },
        "policy": {"version": event.policy_version, "title": policy_title},
        "event": document,
        "chain": {"seq": event.seq, "prev_hash": event.prev_hash, "hash": event.hash},
    }


def verify_receipt(signed: Any, jwk: dict[str, Any]) -> dict[str, Any]:
    """Check a signed receipt against a public JWK; returns the receipt or raises ``IntegrityFailure``."""
    if not isinstance(signed, dict) or not isinstance(signed.get("receipt"), dict):
        raise InvalidInput("not a Consentry receipt: no 'receipt' object", field="receipt")
    signature = signed.get("signature")
    if not isinstance(signature, dict) or signature.get("alg") != "EdDSA" or "value" not in signature:
        raise InvalidInput("not a Consentry receipt: no EdDSA 'signature'", field="signature")
    receipt: dict[str, Any] = signed["receipt"]
    key = key_from_jwk(jwk)
    if signature.get("kid") not in (None, jwk.get("kid")) and jwk.get("kid") is not None:
        raise IntegrityFailure(f"receipt was signed with key {signature.get('kid')}, not {jwk.get('kid')}")
    try:
        key.verify(b64url_decode(str(signature["value"])), canonical_json(receipt))
    except (InvalidSignature, ValueError) as error:
        raise IntegrityFailure("the signature does not match the receipt") from error
    chain, event = receipt.get("chain"), receipt.get("event")
    if not isinstance(chain, dict) or not isinstance(event, dict):
        raise IntegrityFailure("the receipt carries no event or chain link")
    if chain_hash(str(chain.get("prev_hash")), event) != chain.get("hash"):
        raise IntegrityFailure("the event's hash does not match its content", seq=chain.get("seq"))
    return receipt
