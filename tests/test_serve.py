"""``consentry serve`` with several worker processes appends to one unbroken chain."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from consentry.config import Settings
from consentry.consent import ledger
from consentry.db import Database
from tests.conftest import make_account


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_api_workers_share_one_chain(settings: Settings, database: Database, tmp_path: Path) -> None:
    accounts = [make_account(database, handle=f"w{i}") for i in range(4)]
    port = free_port()
    env = {**os.environ, "CONSENTRY_HOME": str(settings.home), "CONSENTRY_DATABASE_URL": database.url}
    server = subprocess.Popen(
        [sys.executable, "-m", "consentry.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "server.log").open("w"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
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
