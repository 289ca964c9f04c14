"""Group commit: concurrent requests share transactions, fail alone, and keep the chain whole."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest

from consentry.consent import ledger
from consentry.consent.receipts import verify_receipt
from consentry.consent.service import ChangeRequest, ConsentContext
from consentry.consent.writer import ConsentWriter, Receipts
from consentry.db import Database
from consentry.errors import InvalidInput, NotFound
from tests.conftest import make_account


def test_concurrent_requests_are_batched_and_chained(database: Database, ctx: ConsentContext) -> None:
    ids = [make_account(database, handle=f"u{i}")[0] for i in range(8)]
    writer = ConsentWriter(database, ctx)
    results: list[Receipts] = []
    lock = threading.Lock()

    def client(account_id: int) -> None:
        for i in range(25):
            receipts = writer.change(
                ChangeRequest(account_id, {"assistant_realtime": "deny" if i % 2 else "allow"}, "ios")
            )
            with lock:
                results.extend(receipts)

    threads = [threading.Thread(target=client, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert len(results) == 200
    assert writer.requests == 200 and writer.batches < 200  # several requests shared a transaction
    for signed in results:
        verify_receipt(signed, ctx.signer.jwk)
    with database.read() as session:
        report = ledger.verify(session)
    assert report.ok and report.events == 200
    assert sorted(r["receipt"]["chain"]["seq"] for r in results) == list(range(1, 201))


def test_a_bad_request_fails_alone(database: Database, ctx: ConsentContext) -> None:
    account_id, _ = make_account(database)
    writer = ConsentWriter(database, ctx)
    writer._ensure_started()
    futures: list[Future[Receipts]] = [
        writer.submit(ChangeRequest(account_id, {"assistant_realtime": "deny"}, "web")),
        writer.submit(ChangeRequest(account_id, {"nope": "deny"}, "web")),
        writer.submit(ChangeRequest(987654, {"assistant_realtime": "deny"}, "web")),
        writer.submit(
            ChangeRequest(account_id, {"third_party_sharing": "deny", "assistant_realtime": "allow"}, "web")
        ),
    ]
    writer.close()
    assert len(futures[0].result()) == 1
    with pytest.raises(InvalidInput):
        futures[1].result()
    with pytest.raises(NotFound):
        futures[2].result()
    assert [r["receipt"]["event"]["setting"] for r in futures[3].result()] == [
        "third_party_sharing",
        "assistant_realtime",
    ]
    with database.read() as session:
        report = ledger.verify(session)
    assert report.ok and report.events == 3
