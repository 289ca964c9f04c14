"""``consentry serve`` with several worker processes appends to one unbroken chain."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from consentry.config import Settings
from consentry.consent import ledger
from consentry.consent.models import ConsentEvent
from consentry.db import Database
from tests.conftest import make_account


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(
    settings: Settings, database: Database, tmp_path: Path, workers: int
) -> tuple[subprocess.Popen[bytes], str]:
    """``consentry serve`` with ``workers`` processes on a free port, once it answers."""
    port = free_port()
    env = {**os.environ, "CONSENTRY_HOME": str(settings.home), "CONSENTRY_DATABASE_URL": database.url}
    with (tmp_path / "server.log").open("a") as log:  # the server keeps its own handle
        server = subprocess.Popen(
            [sys.executable, "-m", "consentry.cli", "serve", "--port", str(port), "--workers", str(workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,  # its own process group: a crash test kills every worker at once
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return server, base
        except httpx.TransportError:
            pass
        assert server.poll() is None, (tmp_path / "server.log").read_text()
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.2)


def test_two_api_workers_share_one_chain(settings: Settings, database: Database, tmp_path: Path) -> None:
    accounts = [make_account(database, handle=f"w{i}") for i in range(4)]
    server, base = _start(settings, database, tmp_path, workers=2)
    try:
        failures: list[int] = []

        def client(token: str) -> None:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as http:
                for i in range(15):
                    r = http.put(
                        "/v1/me/settings",
                        json={"settings": {"assistant_realtime": "deny" if i % 2 else "allow"}},
                    )
                    if r.status_code != 200:
                        failures.append(r.status_code)

        threads = [threading.Thread(target=client, args=(token,)) for _, token in accounts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert failures == []
    with database.read() as session:
        report = ledger.verify(session)
    assert report.ok and report.events == 60


ROUNDS = 200
WRITERS = 8


def _conflicting_round(clients: list[httpx.Client], round_no: int) -> list[dict[str, Any]]:
    """Every client changes the same setting at once, half to allow and half to deny."""
    receipts: list[dict[str, Any]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(clients))

    def write(http: httpx.Client, value: str) -> None:
        barrier.wait()
        r = http.put("/v1/me/settings", json={"settings": {"assistant_realtime": value}})
        assert r.status_code == 200, r.text
        with lock:
            receipts.extend(r.json()["receipts"])

    threads = [
        threading.Thread(target=write, args=(http, "allow" if (i + round_no) % 2 else "deny"))
        for i, http in enumerate(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return receipts


def test_state_equals_the_last_event_under_conflicting_writers_in_several_processes(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    """Issue 13 item 1: 4 API processes, 8 conflicting writers per round; the served state after each
    round is the value of the receipt with the highest seq, and time never goes back along the chain."""
    _, token = make_account(database, handle="contended")
    server, base = _start(settings, database, tmp_path, workers=4)
    headers = {"Authorization": f"Bearer {token}"}
    clients = [httpx.Client(base_url=base, headers=headers, timeout=60) for _ in range(WRITERS)]
    mismatches: list[tuple[int, str, int, str, int | None]] = []
    try:
        for round_no in range(ROUNDS):
            receipts = _conflicting_round(clients, round_no)
            assert len(receipts) == WRITERS
            last = max(receipts, key=lambda r: r["receipt"]["chain"]["seq"])["receipt"]
            served = clients[round_no % WRITERS].get("/v1/me/settings").json()
            [state] = [s for s in served["settings"] if s["key"] == "assistant_realtime"]
            if (state["value"], state["seq"]) != (last["event"]["value"], last["chain"]["seq"]):
                mismatches.append(
                    (round_no, last["event"]["value"], last["chain"]["seq"], state["value"], state["seq"])
                )
    finally:
        for http in clients:
            http.close()
        server.terminate()
        server.wait(timeout=60)
    assert mismatches == []
    with database.read() as session:
        report = ledger.verify(session)
        times = session.scalars(select(ConsentEvent.recorded_at).order_by(ConsentEvent.seq)).all()
    assert report.ok and report.events == ROUNDS * WRITERS
    assert all(a <= b for a, b in itertools.pairwise(times))  # live writes never go back in time


ACKNOWLEDGED = 2000


def test_no_acknowledged_change_is_lost_when_every_server_process_is_killed(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    """A crash: SIGKILL to the server and all its workers while 8 clients write. Every change the API
    acknowledged (a 200 with a receipt) is in the ledger afterwards with the receipt's hash, the chain
    verifies, and each account's served state is its last event."""
    accounts = [make_account(database, handle=f"crash{i}") for i in range(WRITERS)]
    server, base = _start(settings, database, tmp_path, workers=2)
    acknowledged: list[dict[str, Any]] = []
    lock = threading.Lock()
    killed = threading.Event()

    def client(i: int, token: str) -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            for n in itertools.count():
                value = "allow" if (n + i) % 2 else "deny"
                try:
                    r = http.put("/v1/me/settings", json={"settings": {"assistant_realtime": value}})
                except httpx.TransportError:
                    return  # the server died under this request: not acknowledged
                if r.status_code != 200:
                    return
                with lock:
                    acknowledged.extend(x["receipt"] for x in r.json()["receipts"])
                    if len(acknowledged) >= ACKNOWLEDGED and not killed.is_set():
                        killed.set()
                        os.killpg(server.pid, signal.SIGKILL)

    threads = [threading.Thread(target=client, args=(i, token)) for i, (_, token) in enumerate(accounts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    server.wait(timeout=30)
    assert killed.is_set() and len(acknowledged) >= ACKNOWLEDGED

    with database.read() as session:
        report = ledger.verify(session)
        stored = dict(session.execute(select(ConsentEvent.seq, ConsentEvent.hash)).all())
    assert report.ok
    lost = [r["chain"]["seq"] for r in acknowledged if stored.get(r["chain"]["seq"]) != r["chain"]["hash"]]
    assert lost == []
    # after a restart, each account is served the value of its last event
    with database.read() as session:
        last = {
            key: (seq, value)
            for seq, key, value in session.execute(
                select(ConsentEvent.seq, ConsentEvent.subject_key, ConsentEvent.value).order_by(
                    ConsentEvent.seq
                )
            )
        }
        expected = {
            account_id: last[str(ledger.subject_key_for(session, account_id, create=False))]
            for account_id, _ in accounts
        }
    server, base = _start(settings, database, tmp_path, workers=1)
    try:
        for account_id, token in accounts:
            body = httpx.get(f"{base}/v1/me/settings", headers={"Authorization": f"Bearer {token}"}).json()
            [state] = [s for s in body["settings"] if s["key"] == "assistant_realtime"]
            assert (state["seq"], state["value"]) == expected[account_id]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def test_a_server_on_another_port_issues_receipts_naming_that_port(
    settings: Settings, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19 item 2: without CONSENTRY_OPERATOR_URL, receipts name where the server listens, in every
    worker process."""
    _, token = make_account(database, handle="porter")
    monkeypatch.delenv("CONSENTRY_OPERATOR_URL", raising=False)
    monkeypatch.delenv("CONSENTRY_LISTEN_URL", raising=False)
    server, base = _start(settings, database, tmp_path, workers=2)
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as http:
            receipts = [
                http.put("/v1/me/settings", json={"settings": {"assistant_realtime": value}}).json()
                for value in ("deny", "allow", "deny", "allow")  # likely served by both workers
            ]
            key = http.get("/.well-known/consentry/receipt-key")
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert base != "http://127.0.0.1:8000"
    for body in receipts:
        receipt = body["receipts"][0]["receipt"]
        assert receipt["public_key_url"] == f"{base}/.well-known/consentry/receipt-key"
        assert receipt["controller"]["url"] == base
    assert key.status_code == 200
