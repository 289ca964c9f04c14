"""The log as served: the checkpoint, tiles and entry bundles at tlog-tiles paths, consistency proofs,
and a receipt's inclusion proof, which still verifies after the account's subject key is shredded."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pymerkle import InmemoryTree

from consentry.api import create_app
from consentry.config import Settings
from consentry.db import Database
from consentry.errors import IntegrityFailure
from consentry.transparency import merkle, tiles
from consentry.transparency.checkpoint import parse_checkpoint
from consentry.transparency.note import parse_vkey
from consentry.transparency.publisher import publish
from consentry.transparency.verify import Trust, verify_checkpoint, verify_receipt_with_proof
from tests.conftest import make_account


@pytest.fixture
def settings(tmp_path: Path, database: Database) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=database.url,
        operator_name="Test operator",
        operator_url="https://consent.example.org",
        checkpoint_interval_seconds=0.05,
    )


@pytest.fixture
def client(settings: Settings, database: Database) -> Iterator[TestClient]:
    with TestClient(create_app(settings, database=database, migrate=False)) as test_client:
        yield test_client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def change(client: TestClient, token: str, value: str) -> dict[str, object]:
    response = client.put(
        "/v1/me/settings", headers=auth(token), json={"settings": {"third_party_sharing": value}}
    )
    assert response.status_code == 200, response.text
    [receipt] = response.json()["receipts"]
    return dict(receipt)


def wait_for_checkpoint(client: TestClient, size: int) -> str:
    for _ in range(200):
        response = client.get("/.well-known/consentry/checkpoint")
        if response.status_code == 200 and parse_checkpoint(response.text)[0].size >= size:
            return response.text
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint of size {size}")


def trust_of(client: TestClient) -> Trust:
    return Trust(parse_vkey(client.get("/.well-known/consentry/checkpoint-key").text))


def test_checkpoints_follow_writes_and_tiles_rebuild_the_root(client: TestClient, database: Database) -> None:
    _, token = make_account(database)
    for i in range(300):
        change(client, token, "allow" if i % 2 else "deny")
    text = wait_for_checkpoint(client, 300)
    assert (
        client.get("/.well-known/consentry/checkpoint").headers["content-type"] == "text/plain; charset=utf-8"
    )
    checked = verify_checkpoint(text, trust_of(client))
    assert checked.checkpoint.origin == "consent.example.org/consentry/consent-log"
    assert checked.checkpoint.size == 300
    assert client.get("/tlog/checkpoint").text == text

    # the entries and tiles a plain file server would hold rebuild the same root (pymerkle's)
    bundle = client.get("/tlog/tile/entries/000")
    assert bundle.status_code == 200 and "immutable" in bundle.headers["cache-control"]
    entries = tiles.split_bundle(bundle.content) + tiles.split_bundle(
        client.get("/tlog/tile/entries/001.p/44").content
    )
    tree = InmemoryTree(algorithm="sha256")
    for entry in entries:
        tree.append_entry(entry)
    assert tree.get_root(300) == checked.checkpoint.root
    level0 = client.get("/tlog/tile/0/000").content
    assert level0[:32] == merkle.leaf_hash(entries[0]) and len(level0) == 8192
    assert client.get("/tlog/tile/1/000.p/1").content == merkle.perfect_root(
        [level0[i : i + 32] for i in range(0, 8192, 32)]
    )
    for missing in ("/tlog/tile/0/001", "/tlog/tile/0/001.p/45", "/tlog/tile/entries/002.p/1"):
        assert client.get(missing).status_code == 404
    bad = client.get("/tlog/tile/0/1")
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"

    consistency = client.get("/v1/transparency/consistency", params={"from": 100, "to": 300}).json()
    merkle.verify_consistency(
        [base64.b64decode(h) for h in consistency["proof"]],
        100,
        tree.get_root(100),
        300,
        checked.checkpoint.root,
    )
    assert client.get("/v1/transparency/consistency", params={"from": 5, "to": 301}).status_code == 422
    assert client.get("/v1/transparency/consistency", params={"from": 6, "to": 5}).status_code == 422


def test_a_receipt_gets_its_proof_once_a_checkpoint_covers_it(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    slow = settings.model_copy(update={"checkpoint_interval_seconds": 3600})
    with TestClient(create_app(slow, database=database, migrate=False)) as client:
        account_id, token = make_account(database)
        first = change(client, token, "deny")
        publish(database, client.app.state.tlog, force=True)  # type: ignore[attr-defined]
        wait_for_checkpoint(client, 1)
        second = change(client, token, "allow")
        seq = second["receipt"]["chain"]["seq"]  # type: ignore[index]
        early = client.get(f"/v1/me/receipts/{seq}/proof", headers=auth(token))
        assert early.status_code == 409 and "not in a checkpoint yet" in early.json()["detail"]
        publish(database, client.app.state.tlog, force=True)  # type: ignore[attr-defined]
        proof = client.get(f"/v1/me/receipts/{seq}/proof", headers=auth(token))
        assert proof.status_code == 200
        key = client.get("/.well-known/consentry/receipt-key").json()["keys"][0]
        trust = trust_of(client)
        checked = verify_receipt_with_proof(second, key, proof.json()["tlog_proof"], trust)
        assert checked.receipt["event"]["value"] == "allow"
        text = client.get(
            f"/v1/me/receipts/{seq}/proof", params={"format": "tlog-proof"}, headers=auth(token)
        )
        assert text.text == proof.json()["tlog_proof"] and text.text.startswith("c2sp.org/tlog-proof@v1\n")
        # the proof is about that event only
        with pytest.raises(IntegrityFailure):
            verify_receipt_with_proof(first, key, proof.json()["tlog_proof"], trust)

        _, other = make_account(database, handle="eve")
        assert client.get(f"/v1/me/receipts/{seq}/proof", headers=auth(other)).status_code == 404

        # crypto-shredding: the account's subject mapping goes, every proof stays valid
        with database.write() as session:
            session.execute(sa.text("DELETE FROM consent_subjects WHERE account_id = :a"), {"a": account_id})
        latest = client.get("/.well-known/consentry/checkpoint").text
        size = parse_checkpoint(latest)[0].size
        assert verify_checkpoint(latest, trust).checkpoint.root == parse_checkpoint(latest)[0].root
        for path in ("/tlog/tile/entries/000.p/" + str(size), "/tlog/tile/0/000.p/" + str(size)):
            assert client.get(path).status_code == 200
        verify_receipt_with_proof(second, key, proof.json()["tlog_proof"], trust)
