"""Signed receipts: created with each change, verifiable offline, tamper-evident."""

from __future__ import annotations

import copy
import stat
from pathlib import Path

import pytest

from consentry.consent import service
from consentry.consent.receipts import PUBLIC_FILE, load_or_create_signer, verify_receipt
from consentry.consent.service import ConsentContext
from consentry.db import Database
from consentry.errors import IntegrityFailure, InvalidInput
from tests.conftest import make_account


def test_key_pair_is_created_once_private_and_reused(tmp_path: Path) -> None:
    first = load_or_create_signer(tmp_path)
    again = load_or_create_signer(tmp_path)
    assert first.jwk == again.jwk
    assert stat.S_IMODE((tmp_path / "receipt-key.pem").stat().st_mode) == 0o600
    assert (tmp_path / PUBLIC_FILE).exists()
    assert set(first.jwk) >= {"kty", "crv", "x", "kid"}


def test_receipt_verifies_and_detects_tampering(
    database: Database, ctx: ConsentContext, tmp_path: Path
) -> None:
    account_id, _ = make_account(database, country="DE")
    with database.write() as session:
        [signed] = service.change_settings(
            session,
            account_id=account_id,
            changes={"third_party_sharing": "allow"},
            client="android",
            ctx=ctx,
        )
    receipt = verify_receipt(signed, ctx.signer.jwk)
    assert receipt["event"]["value"] == "allow"
    assert receipt["collection_method"] == "android"
    assert receipt["jurisdiction"] == "EEA"
    assert receipt["service"]["recipient"] == "third_party"
    assert receipt["chain"]["seq"] == receipt["event"]["seq"]

    edited = copy.deepcopy(signed)
    edited["receipt"]["event"]["value"] = "deny"
    with pytest.raises(IntegrityFailure):
        verify_receipt(edited, ctx.signer.jwk)

    other = load_or_create_signer(tmp_path / "other")
    with pytest.raises(IntegrityFailure):
        verify_receipt(signed, other.jwk)

    with pytest.raises(InvalidInput):
        verify_receipt({"nothing": 1}, ctx.signer.jwk)


def test_resigned_receipt_with_a_forged_hash_is_caught(database: Database, ctx: ConsentContext) -> None:
    """Even a receipt signed with the right key fails if its event does not hash to its chain link."""
    account_id, _ = make_account(database)
    with database.write() as session:
        [signed] = service.change_settings(
            session, account_id=account_id, changes={"assistant_realtime": "deny"}, client="web", ctx=ctx
        )
    body = copy.deepcopy(signed["receipt"])
    body["event"]["value"] = "allow"
    with pytest.raises(IntegrityFailure, match="hash"):
        verify_receipt(ctx.signer.sign(body), ctx.signer.jwk)


def test_receipt_can_be_fetched_again_identically(database: Database, ctx: ConsentContext) -> None:
    account_id, _ = make_account(database)
    with database.write() as session:
        [signed] = service.change_settings(
            session, account_id=account_id, changes={"assistant_realtime": "deny"}, client="web", ctx=ctx
        )
    with database.read() as session:
        again = service.receipt_for(
            session, account_id=account_id, seq=signed["receipt"]["chain"]["seq"], ctx=ctx
        )
    assert again == signed
