"""The dishonest operator: history rewritten straight in the database (an old event edited and every
later hash, the head and the tree recomputed; the tail truncated; two events reordered), checkpoints
signed afresh by the operator's own key. A real witness process refuses to cosign, the monitor holding
an earlier checkpoint reports the fork or rollback, a receipt issued before fails against the new
tree, and a release built before no longer verifies. On a ledger of one partition and of four (the
edit inside one partition, the log of partition states signed again over it), on SQLite and
PostgreSQL."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from consentry.config import Settings
from consentry.consent import ledger
from consentry.db import Database
from consentry.errors import InvalidInput
from consentry.lake.generate import generate_lake
from consentry.transparency import partitions, tiles
from consentry.transparency.checkpoint import parse_checkpoint
from consentry.transparency.publisher import add_checkpoint_body
from consentry.transparency.service import LogContext
from tests.conftest import make_account
from tests.test_serve import free_port
from tests.transparency.dishonest import tamper

WITNESS = "witness.test/w1"


def _wait(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"{url} did not answer"
        time.sleep(0.2)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consentry.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def _covered(base: str, checkpoint: str, count: int, events: int) -> bool:
    """Whether a checkpoint of the log covers ``events`` events (with several partitions: whether the
    state entry it ends with names that many)."""
    try:
        size = parse_checkpoint(checkpoint)[0].size
    except InvalidInput:
        return False  # none signed yet: the answer is a problem document
    if count == 1 or size == 0:
        return size == events
    last = tiles.tile_at(tiles.ENTRIES, (size - 1) // tiles.TILE_WIDTH, size)
    bundle = httpx.get(f"{base}/tlog/{last.path}")
    latest = partitions.parse_states(tiles.split_bundle(bundle.content)[-1])
    return sum(n for n, _ in latest.trees) == events


def _edits(mode: str, count: int, mates: list[int]) -> tuple[int, int]:
    """The seq to edit and the seq of the saved receipt, in the partition whose seqs are ``mates``."""
    if count == 1:
        return {"rewrite": (3, 3), "truncate": (8, 10), "reorder": (4, 4)}[mode]
    return {"rewrite": (mates[1], mates[1]), "truncate": (mates[0], mates[-1]), "reorder": (mates[1],) * 2}[
        mode
    ]


@pytest.mark.parametrize("count", [1, 4], ids=["P1", "P4"])
@pytest.mark.parametrize("mode", ["rewrite", "truncate", "reorder"])
def test_a_rewritten_history_is_caught(
    mode: str, count: int, settings: Settings, database: Database, tmp_path: Path
) -> None:
    with database.write() as session:
        ledger.set_partitions(session, count)
    log_key = LogContext.from_settings(settings).signer.vkey  # the operator's checkpoint key
    witness_state = tmp_path / "witness" / "state.db"
    witness_state.parent.mkdir()
    witness_key = _cli("witness", "key", "--state", str(witness_state), "--name", WITNESS).stdout.strip()
    assert witness_key.startswith(WITNESS + "+")
    witness_port, server_port = free_port(), free_port()
    witness_log, server_log = tmp_path / "witness.log", tmp_path / "server.log"
    (tmp_path / "witnesses.json").write_text(
        json.dumps({"witnesses": [{"url": f"http://127.0.0.1:{witness_port}", "vkey": witness_key}]})
    )
    env = {
        **os.environ,
        "CONSENTRY_HOME": str(settings.home),
        "CONSENTRY_DATABASE_URL": database.url,
        "CONSENTRY_OPERATOR_URL": f"http://127.0.0.1:{server_port}",
        "CONSENTRY_WITNESSES_FILE": str(tmp_path / "witnesses.json"),
        "CONSENTRY_CHECKPOINT_INTERVAL_SECONDS": "0.2",
    }
    processes = []
    try:
        with witness_log.open("w") as out:
            witness = subprocess.Popen(
                [sys.executable, "-m", "consentry.cli", "witness", "serve", "--state", str(witness_state),
                 "--name", WITNESS, "--log-key", log_key, "--port", str(witness_port)],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        processes.append(witness)
        _wait(witness, f"http://127.0.0.1:{witness_port}/key", witness_log)
        with server_log.open("w") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "consentry.cli", "serve", "--port", str(server_port)],
                env=env, stdout=subprocess.DEVNULL, stderr=out,
            )  # fmt: skip
        processes.append(server)
        base = f"http://127.0.0.1:{server_port}"
        _wait(server, f"{base}/healthz", server_log)

        tokens = [make_account(database, handle=f"h{i}")[1] for i in range(3)]
        receipts = {}
        for i in range(12):
            response = httpx.put(
                f"{base}/v1/me/settings",
                headers={"Authorization": f"Bearer {tokens[i % 3]}"},
                json={"settings": {"third_party_sharing": "deny" if i % 2 == 0 else "allow"}},
            )
            assert response.status_code == 200, response.text
            [signed] = response.json()["receipts"]
            receipts[signed["receipt"]["chain"]["seq"]] = signed
        deadline = time.monotonic() + 60
        while True:  # a checkpoint covering all 12 events, cosigned by the witness
            text = httpx.get(f"{base}/.well-known/consentry/checkpoint").text
            if f"— {WITNESS} " in text and _covered(base, text, count, 12):
                break
            assert time.monotonic() < deadline, text + server_log.read_text()
            time.sleep(0.2)
        accepted = parse_checkpoint(text)[0].size
        assert accepted == 12 if count == 1 else accepted >= 1

        # the events of one partition: the edit happens there (with one partition, everywhere)
        by_partition: dict[int, list[int]] = {}
        for seq in sorted(receipts):
            by_partition.setdefault(ledger.partition_of_seq(seq, count), []).append(seq)
        mates = max(by_partition.values(), key=len)  # each account's 4 events share a partition
        edited, kept = _edits(mode, count, mates)

        watch = ["--log-key", log_key, "--witness-key", witness_key, "--quorum", "1"]
        state = tmp_path / "monitor.json"
        (tmp_path / "receipt.json").write_text(json.dumps(receipts[kept]))
        first = _cli(
            "monitor", base, "--state", str(state), "--full", "--receipt", str(tmp_path / "receipt.json"),
            *watch,
        )  # fmt: skip
        assert first.returncode == 0, first.stderr
        assert json.loads(state.read_text())["size"] == accepted
        if count > 1:
            assert "recomputed all 4 partitions' trees from their 12 events" in first.stdout

        # a release built now cites the accepted checkpoint, and verifies against the log
        generate_lake(tmp_path / "lake", accounts=40, posts=200, seed=3)
        added = _cli("recipient", "add", "assistant", "--kind", "first_party", env=env)
        assert added.returncode == 0, added.stderr
        built = _cli("dataset", "build", "--recipient", "assistant", "--lake", str(tmp_path / "lake"),
                     "--out", str(tmp_path / "release"), env=env)  # fmt: skip
        assert built.returncode == 0, built.stderr
        manifest = json.loads((tmp_path / "release" / "manifest.json").read_text())
        assert manifest["consent"]["checkpoint"]["size"] == accepted
        assert manifest["consent"]["checkpoint"]["cosigned_by"] == [WITNESS]
        release_id = manifest["release_id"]
        for where in ([], ["--log", base]):
            verified = _cli("dataset", "verify", release_id, *where, env=env)
            assert verified.returncode == 0, verified.stdout + verified.stderr
            assert "is consistent with the log's current checkpoint" in " ".join(verified.stdout.split())

        tamper(database, mode, edited)
        with database.read() as session:
            assert ledger.verify(session).ok  # the chain alone no longer tells
        response = httpx.put(  # one more write: the operator's software signs a checkpoint of the new tree
            f"{base}/v1/me/settings",
            headers={"Authorization": f"Bearer {tokens[0]}"},
            json={"settings": {"assistant_realtime": "deny"}},
        )
        assert response.status_code == 200
        [latest] = response.json()["receipts"]
        latest_seq = latest["receipt"]["chain"]["seq"]
        deadline = time.monotonic() + 60
        while True:  # until a checkpoint covers that write
            proof = httpx.get(
                f"{base}/v1/me/receipts/{latest_seq}/proof", headers={"Authorization": f"Bearer {tokens[0]}"}
            )
            if proof.status_code == 200:
                break
            assert proof.status_code == 409 and time.monotonic() < deadline, (
                proof.text + server_log.read_text()
            )
            time.sleep(0.2)
        new_checkpoint = proof.json()["checkpoint"]
        size = parse_checkpoint(new_checkpoint)[0].size
        if count == 1:
            assert size == (9 if mode == "truncate" else 13)
        time.sleep(1)  # the publisher has asked the witness by now
        assert f"— {WITNESS} " not in httpx.get(f"{base}/.well-known/consentry/checkpoint").text

        # the witness refuses: the new tree does not extend the one it cosigned
        if size < accepted:
            body = add_checkpoint_body(accepted, [], new_checkpoint)
            refused = httpx.post(f"http://127.0.0.1:{witness_port}/add-checkpoint", content=body)
            assert refused.status_code == 400
        elif size == accepted:
            body = add_checkpoint_body(accepted, [], new_checkpoint)
            refused = httpx.post(f"http://127.0.0.1:{witness_port}/add-checkpoint", content=body)
            assert refused.status_code == 409 and "fork" in refused.text
        else:
            consistency = httpx.get(
                f"{base}/v1/transparency/consistency", params={"from": accepted, "to": size}
            ).json()
            body = add_checkpoint_body(
                accepted, [base64.b64decode(h) for h in consistency["proof"]], new_checkpoint
            )
            refused = httpx.post(f"http://127.0.0.1:{witness_port}/add-checkpoint", content=body)
            assert refused.status_code == 422 and "not consistent" in refused.text
            assert "not consistent" in httpx.get(f"http://127.0.0.1:{witness_port}/refusals").text

        # the monitor holding the accepted checkpoint names the problem
        again = _cli("monitor", base, "--state", str(state), *watch[:2])
        assert again.returncode == 1
        assert ("ROLLBACK" if size < accepted else "FORK") in again.stderr, again.stderr
        assert json.loads(state.read_text())["size"] == accepted  # the bad checkpoint was not accepted
        # without the witness quorum nothing is accepted either
        quorum = _cli("monitor", base, *watch)
        assert quorum.returncode == 1 and "BAD-SIGNATURE" in quorum.stderr

        # the release built before fails: locally and against the served log
        reason = (
            "the log was truncated"
            if size < accepted
            else "a fork"
            if size == accepted
            else "the history it covers was rewritten"
        )
        for where in ([], ["--log", base]):
            refused_release = _cli("dataset", "verify", release_id, *where, env=env)
            said = " ".join((refused_release.stdout + refused_release.stderr).split())
            assert refused_release.returncode == 1, said
            assert reason in said

        # the receipt issued before fails against the new tree
        fresh = _cli("monitor", base, "--receipt", str(tmp_path / "receipt.json"), *watch[:2])
        assert fresh.returncode == 1 and "RECEIPT" in fresh.stderr, fresh.stderr
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
