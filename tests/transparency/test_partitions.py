"""A partitioned ledger's log: one signed checkpoint over every partition's tree, proofs in two steps,
witnesses and the monitor following it as they follow a single tree."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from consentry.api import create_app
from consentry.config import Settings
from consentry.consent import ledger
from consentry.consent.models import ConsentEvent
from consentry.db import Database
from consentry.errors import IntegrityFailure
from consentry.transparency import merkle, monitor, partitions, service, tiles
from consentry.transparency.audit import audit
from consentry.transparency.checkpoint import parse_checkpoint
from consentry.transparency.cite import inclusion_of
from consentry.transparency.note import COSIGNATURE_V1, NoteSigner, parse_vkey
from consentry.transparency.publisher import add_checkpoint_body, publish
from consentry.transparency.verify import Trust, verify_checkpoint, verify_receipt_with_proof
from consentry.transparency.witness import Witness
from tests.conftest import make_account
from tests.transparency.test_go_verifier import build, run

P = 4


@pytest.fixture
def client(tmp_path: Path, database: Database) -> Iterator[TestClient]:
    with database.write() as session:
        ledger.set_partitions(session, P)
    settings = Settings(
        home=tmp_path / "home",
        database_url=database.url,
        operator_url="https://consent.example.org",
        checkpoint_interval_seconds=3600,  # checkpoints only when the test publishes
    )
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


def mth(entries: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.1, written out recursively (independent of the tile store)."""
    if not entries:
        return hashlib.sha256(b"").digest()
    if len(entries) == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1
    while k * 2 < len(entries):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(entries[:k]) + mth(entries[k:])).digest()


def publish_now(client: TestClient, database: Database) -> str:
    publish(database, client.app.state.tlog, force=True)  # type: ignore[attr-defined]
    return client.get("/.well-known/consentry/checkpoint").text


def test_one_checkpoint_commits_to_every_partition_and_proofs_take_two_steps(
    client: TestClient, database: Database, tmp_path: Path
) -> None:
    tokens = [make_account(database, handle=f"u{n}")[1] for n in range(10)]
    receipts = [change(client, token, "deny") for token in tokens]
    first = publish_now(client, database)
    trust = Trust(parse_vkey(client.get("/.well-known/consentry/checkpoint-key").text))
    checked = verify_checkpoint(first, trust)
    assert checked.checkpoint.extensions == (f"consentry.partitions {P}",)
    assert checked.checkpoint.size == 1

    # the signed tree's entry names every partition's tree exactly as its events give it
    [entry] = tiles.split_bundle(client.get("/tlog/tile/entries/000.p/1").content)
    assert merkle.leaf_hash(entry) == checked.checkpoint.root
    states = partitions.parse_states(entry)
    with database.read() as session:
        events = list(session.scalars(sa.select(ConsentEvent).order_by(ConsentEvent.seq)))
        for partition, (size, root) in enumerate(states.trees):
            mine = [e for e in events if ledger.partition_of_seq(e.seq, P) == partition]
            assert size == len(mine)
            assert root == mth([ledger.canonical_json(ledger.document_of(e)) for e in mine])
    assert sum(size for size, _ in states.trees) == 10 and sum(1 for s, _ in states.trees if s) > 1

    # every receipt's proof: its event in its partition's tree, that tree in the signed checkpoint
    key = client.get("/.well-known/consentry/receipt-key").json()["keys"][0]
    proofs = []
    for token, receipt in zip(tokens, receipts, strict=True):
        seq = receipt["receipt"]["chain"]["seq"]  # type: ignore[index]
        body = client.get(f"/v1/me/receipts/{seq}/proof", headers=auth(token)).json()
        assert body["partition"]["partition"] == ledger.partition_of_seq(seq, P)
        checked_receipt = verify_receipt_with_proof(receipt, key, body["tlog_proof"], trust)
        assert checked_receipt.receipt["event"]["seq"] == seq
        proofs.append(body["tlog_proof"])
    with database.read() as session:  # the settings page's download is the same proof
        cited = inclusion_of(session, seq=receipts[2]["receipt"]["chain"]["seq"])  # type: ignore[index]
    assert cited is not None
    verify_receipt_with_proof(receipts[2], key, cited.text, trust)
    with pytest.raises(IntegrityFailure):  # a proof is about its own event only
        verify_receipt_with_proof(receipts[0], key, proofs[1], trust)

    # a witness cosigns each checkpoint and the monitor follows the log, partition by partition
    witness = Witness(
        NoteSigner("witness.example/w1", Ed25519PrivateKey.generate(), COSIGNATURE_V1),
        [trust.log],
        tmp_path / "witness.db",
    )
    assert witness.add_checkpoint(add_checkpoint_body(0, [], first)).status == 200
    log = monitor.LogClient("http://testserver", client=client)
    state = tmp_path / "monitor.json"
    assert monitor.run(log, trust=trust, state=state).size == 1
    for token in tokens[:5]:
        change(client, token, "allow")
    second = publish_now(client, database)
    size = parse_checkpoint(second)[0].size
    assert size == 2
    with database.read() as session:
        proof = service.consistency_proof(session, old=1, new=2)
    answer = witness.add_checkpoint(add_checkpoint_body(1, proof, second))
    assert answer.status == 200, answer.body
    report = monitor.run(log, trust=trust, state=state, full=True)
    assert report.previous_size == 1 and report.size == 2
    assert any("every partition's tree extends" in note for note in report.notes)

    # the operator's own audit: every partition's chain and tree, the states and the checkpoint
    with database.read() as session:
        audited = audit(session, log_key=trust.log)
    assert audited.ok, audited.problem
    assert audited.checkpoint_size == 2

    # nothing new: no new entry, no new checkpoint
    assert publish(database, client.app.state.tlog, force=True)[0] is None  # type: ignore[attr-defined]


def test_the_service_never_signs_a_partition_that_was_rewritten(
    client: TestClient, database: Database
) -> None:
    tokens = [make_account(database, handle=f"r{n}")[1] for n in range(6)]
    receipts = [change(client, token, "deny") for token in tokens]
    publish_now(client, database)
    # rewrite an event, its chain and its partition's tree consistently: only the signed state knows
    victim = receipts[0]["receipt"]["chain"]["seq"]  # type: ignore[index]
    partition = ledger.partition_of_seq(victim, P)
    with database.write() as session:
        session.execute(sa.update(ConsentEvent).where(ConsentEvent.seq == victim).values(value="allow"))
        mine = list(
            session.scalars(
                sa.select(ConsentEvent)
                .where((ConsentEvent.seq - 1) % P == partition)
                .order_by(ConsentEvent.seq)
            )
        )
        session.execute(sa.text("DELETE FROM tlog_partition_tiles WHERE partition = :p"), {"p": partition})
        from consentry.transparency import store

        store.append_leaves(
            session,
            0,
            b"".join(merkle.leaf_hash(ledger.canonical_json(ledger.document_of(e))) for e in mine),
            partition=partition,
        )
    with database.read() as session:
        audited = audit(session, log_key=parse_vkey(client.get("/.well-known/consentry/checkpoint-key").text))
    assert not audited.ok and audited.first_bad_seq == victim  # the chain names the edited event
    change(client, tokens[1], "allow")
    with pytest.raises(IntegrityFailure), database.write() as session:
        service.make_checkpoint(session, log=client.app.state.tlog, force=True)  # type: ignore[attr-defined]


def test_go_verifies_the_partitioned_checkpoint_and_the_state_step(
    client: TestClient, database: Database, tmp_path: Path
) -> None:
    binary = build(tmp_path)
    tokens = [make_account(database, handle=f"g{n}")[1] for n in range(6)]
    for token in tokens:
        change(client, token, "deny")
    publish_now(client, database)
    receipts = [change(client, token, "allow") for token in tokens[:3]]
    checkpoint = publish_now(client, database)
    seq = receipts[0]["receipt"]["chain"]["seq"]  # type: ignore[index]
    proof = client.get(f"/v1/me/receipts/{seq}/proof", headers=auth(tokens[0])).json()
    assert proof["size"] == 2 and proof["index"] == 1
    consistency = client.get("/v1/transparency/consistency", params={"from": 1, "to": 2}).json()
    document = {
        "log_key": client.get("/.well-known/consentry/checkpoint-key").text.strip(),
        "checkpoint": checkpoint,
        "entry": base64.b64encode(proof["partition"]["state"].encode()).decode(),
        "index": 1,
        "inclusion": proof["proof"],
        "old_size": 1,
        "old_root": consistency["from_root"],
        "consistency": consistency["proof"],
    }
    ok = run(binary, document)
    assert ok.returncode == 0 and ok.stdout.strip() == "ok 2", ok.stderr
    first_state = tiles.split_bundle(client.get("/tlog/tile/entries/000.p/2").content)[0]
    assert run(binary, {**document, "entry": base64.b64encode(first_state).decode()}).returncode != 0


def test_the_monitor_recomputes_every_partition_and_finds_a_receipt_in_its_partition(
    client: TestClient, database: Database, tmp_path: Path
) -> None:
    tokens = [make_account(database, handle=f"m{n}")[1] for n in range(8)]
    receipts = [change(client, token, "deny") for token in tokens]
    publish_now(client, database)
    receipts += [change(client, token, "allow") for token in tokens[:5]]
    publish_now(client, database)
    trust = Trust(parse_vkey(client.get("/.well-known/consentry/checkpoint-key").text))
    key = client.get("/.well-known/consentry/receipt-key").json()["keys"][0]
    log = monitor.LogClient("http://testserver", client=client)

    # each partition's tree is served as tlog-tiles of its own: entry i of partition p is event i*P+p+1
    with database.read() as session:
        events = [
            (e.seq, ledger.canonical_json(ledger.document_of(e)))
            for e in session.scalars(sa.select(ConsentEvent).order_by(ConsentEvent.seq))
        ]
    for partition in range(P):
        mine = [entry for seq, entry in events if ledger.partition_of_seq(seq, P) == partition]
        if not mine:
            assert client.get(f"/tlog/partitions/{partition}/tile/entries/000.p/1").status_code == 404
            continue
        bundle = client.get(f"/tlog/partitions/{partition}/tile/entries/000.p/{len(mine)}")
        assert bundle.status_code == 200
        assert tiles.split_bundle(bundle.content) == mine
        leaves = client.get(f"/tlog/partitions/{partition}/tile/0/000.p/{len(mine)}").content
        assert leaves == b"".join(merkle.leaf_hash(entry) for entry in mine)
    assert client.get(f"/tlog/partitions/{P}/tile/entries/000.p/1").status_code == 404

    # --full: the log of states and every partition's tree; --receipt: in its partition's tree
    report = monitor.run(
        log,
        trust=trust,
        state=tmp_path / "m.json",
        full=True,
        receipt=receipts[2],
        receipt_key=key,
        workers=3,
    )
    assert report.size == 2
    assert "recomputed all 4 partitions' trees from their 13 events" in report.notes
    assert "the receipt's event is included in the current tree" in report.notes

    # an event edited behind the trees' back: the partition's entries no longer give its signed root
    victim = receipts[9]["receipt"]["chain"]["seq"]  # type: ignore[index]
    with database.write() as session:
        session.execute(sa.update(ConsentEvent).where(ConsentEvent.seq == victim).values(value="deny"))
    with pytest.raises(monitor.MonitorAlarm) as caught:
        monitor.run(log, trust=trust, state=tmp_path / "m.json", full=True)
    assert caught.value.kind == "tree-mismatch"
    assert f"partition {ledger.partition_of_seq(victim, P)}'s events do not hash" in caught.value.detail
    # a receipt the checkpoint does not cover yet is not in its tree
    late = change(client, tokens[7], "allow")
    with pytest.raises(monitor.MonitorAlarm) as uncovered:
        monitor.run(log, trust=trust, state=None, receipt=late, receipt_key=key)
    assert uncovered.value.kind == "receipt" and "is not in partition" in uncovered.value.detail
