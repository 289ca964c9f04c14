"""The monitor's full check: every entry bundle fetched over several connections at once, hashed in
order, and the root compared with the signed one. Against a plain HTTP server of its own (bundles
answered out of order, some missing, short or tampered) and against the application's log on SQLite
and PostgreSQL, where an entry edited behind the tree's back is caught."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pymerkle import InmemoryTree

from consentry.api import create_app
from consentry.config import Settings
from consentry.consent import ledger
from consentry.consent.ledger import NewEvent
from consentry.db import Database
from consentry.errors import InvalidInput
from consentry.transparency import monitor, service, tiles
from consentry.transparency.monitor import LogClient, MonitorAlarm, full_root
from consentry.transparency.note import parse_vkey
from consentry.transparency.tiles import ENTRIES, Tile
from consentry.transparency.verify import Trust

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def entry(index: int) -> bytes:
    """Entries of varied lengths (0 to 300 bytes), so bundles are not all alike."""
    return (b"entry %d " % index) * (index % 31)


def rfc_root(entries: list[bytes]) -> bytes:
    """The root by pymerkle, an implementation of RFC 9162 that is not the project's."""
    if not entries:
        return bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    tree = InmemoryTree(algorithm="sha256")
    for item in entries:
        tree.append_entry(item)
    return bytes(tree.get_root(len(entries)))


class Bundles:
    """A plain HTTP server of entry bundles at their tlog-tiles paths (keep-alive), answering each
    request after a random short delay so that answers come back out of order."""

    def __init__(self, size: int) -> None:
        self.files: dict[str, bytes] = {}
        for index in range(tiles.tiles_of(size, ENTRIES)):
            width = tiles.tile_width(ENTRIES, index, size)
            first = index * tiles.TILE_WIDTH
            bundle = tiles.entry_bundle(entry(first + i) for i in range(width))
            self.files["/tlog/" + Tile(ENTRIES, index, width).path] = bundle
        self.requests = 0
        files, outer = self.files, self
        rng = random.Random(5)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.requests += 1
                time.sleep(rng.random() * 0.003)
                data = files.get(self.path)
                self.send_response(200 if data is not None else 404)
                body = data if data is not None else b"not found\n"
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def served() -> Iterator[Bundles]:
    bundles = Bundles(3_000)  # 11 full bundles and a partial one of 184
    yield bundles
    bundles.close()


@pytest.mark.parametrize("size", [1, 255, 256, 257, 3_000])
@pytest.mark.parametrize("workers", [1, 3, 8])
def test_the_full_check_recomputes_the_rfc_root_in_order(size: int, workers: int) -> None:
    bundles = Bundles(size)
    try:
        seen: list[tuple[str, int, int]] = []
        client = LogClient(bundles.url, connections=workers)
        root = full_root(client, size, workers=workers, progress=lambda *step: seen.append(step))
        assert root == rfc_root([entry(i) for i in range(size)])
        assert [done for _, done, _ in seen] == [min(size, (n + 1) * 256) for n in range(len(seen))]
        assert seen[-1] == ("entries", size, size)
        assert bundles.requests == tiles.tiles_of(size, ENTRIES)  # each bundle fetched once
    finally:
        bundles.close()


def test_a_tampered_entry_changes_the_root(served: Bundles) -> None:
    honest = full_root(LogClient(served.url), 3_000)
    path = "/tlog/tile/entries/007"
    bundle = bytearray(served.files[path])
    bundle[-1] ^= 1  # one bit of the last entry of bundle 7
    served.files[path] = bytes(bundle)
    assert full_root(LogClient(served.url), 3_000) != honest


def test_a_missing_bundle_is_named(served: Bundles) -> None:
    del served.files["/tlog/tile/entries/004"]
    with pytest.raises(MonitorAlarm) as caught:
        full_root(LogClient(served.url), 3_000)
    assert caught.value.kind == "missing"
    assert "/tlog/tile/entries/004 (leaves 1024 to 1279)" in caught.value.detail
    assert "answered 404" in caught.value.detail


def test_a_short_bundle_is_named(served: Bundles) -> None:
    path = "/tlog/tile/entries/009"
    served.files[path] = served.files[path][:-3]  # cut inside its last entry
    with pytest.raises(MonitorAlarm) as caught:
        full_root(LogClient(served.url), 3_000)
    assert caught.value.kind == "tree-mismatch"
    assert caught.value.detail == f"entry bundle {path}: the entry bundle ends inside entry 255"


def test_a_bundle_of_the_wrong_width_is_named(served: Bundles) -> None:
    path = "/tlog/tile/entries/002"
    served.files[path] = tiles.entry_bundle(tiles.split_bundle(served.files[path])[:200])
    with pytest.raises(MonitorAlarm) as caught:
        full_root(LogClient(served.url), 3_000)
    assert caught.value.detail == f"entry bundle {path} holds 200 entries, not 256"


def test_an_unreachable_log_is_an_input_error() -> None:
    bundles = Bundles(10)
    url = bundles.url
    bundles.close()
    with pytest.raises(InvalidInput) as caught:
        full_root(LogClient(url), 10)
    assert "cannot fetch entry bundle /tlog/tile/entries/000.p/10" in str(caught.value)


# --- against the application ------------------------------------------------------------------------


@pytest.fixture
def app_client(tmp_path: Path, database: Database) -> Iterator[TestClient]:
    settings = Settings(
        home=tmp_path / "home",
        database_url=database.url,
        operator_url="https://consent.example.org",
        checkpoint_interval_seconds=3600,
    )
    with TestClient(create_app(settings, database=database, migrate=False)) as test_client:
        yield test_client


def fill(database: Database, n: int) -> None:
    with database.write() as session:
        ledger.append(
            session,
            [
                NewEvent(f"s{i % 7}", "third_party_sharing", "allow" if i % 2 else "deny", "user", 1,
                         T0 + timedelta(seconds=i), "web")
                for i in range(n)
            ],
        )  # fmt: skip


def test_the_monitor_catches_an_entry_edited_behind_the_trees_back(
    app_client: TestClient, database: Database, tmp_path: Path
) -> None:
    fill(database, 600)  # two full bundles and a partial one
    with database.write() as session:
        service.make_checkpoint(session, log=app_client.app.state.tlog, force=True)  # type: ignore[attr-defined]
    trust = Trust(parse_vkey(app_client.get("/.well-known/consentry/checkpoint-key").text))
    log = LogClient("http://testserver", client=app_client)
    report = monitor.run(log, trust=trust, state=tmp_path / "state.json", full=True, workers=4)
    assert report.size == 600 and "recomputed the tree from all 600 entries" in report.notes

    # the operator edits event 300 and nothing else: the chain and the tree still say what was signed
    with database.write() as session:
        session.execute(sa.text("UPDATE consent_events SET value = 'deny' WHERE seq = 300"))  # was allow
    with pytest.raises(MonitorAlarm) as caught:
        monitor.run(log, trust=trust, state=tmp_path / "state.json", full=True, workers=4)
    assert caught.value.kind == "tree-mismatch"
    assert "do not hash to the checkpoint's root at size 600" in caught.value.detail
    # without --full the tree alone is consulted, and it is consistent
    assert monitor.run(log, trust=trust, state=tmp_path / "state.json").size == 600

    # an event removed: its bundle cannot be served, and the monitor names it
    with database.write() as session:
        session.execute(sa.text("DELETE FROM consent_events WHERE seq = 520"))
    with pytest.raises(MonitorAlarm) as missing:
        monitor.run(log, trust=trust, state=tmp_path / "state.json", full=True, workers=4)
    assert missing.value.kind == "missing"
    assert "/tlog/tile/entries/002.p/88 (leaves 512 to 599)" in missing.value.detail
