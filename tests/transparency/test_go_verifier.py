"""Go's ``golang.org/x/mod/sumdb/note`` and ``tlog`` packages (Debian's build of them, compiled here
with no download) verify what the service publishes: the checkpoint's signed note against the
published verifier key, a receipt's inclusion proof and a consistency proof."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

from fastapi.testclient import TestClient

from consentry.db import Database
from consentry.transparency import tiles
from consentry.transparency.publisher import publish
from tests.conftest import make_account
from tests.services import go_toolchain
from tests.transparency.test_router import auth, change, client, settings  # noqa: F401

SOURCE = Path(__file__).parent / "goverify" / "main.go"


def build(tmp_path: Path) -> Path:
    go = go_toolchain()
    binary = tmp_path / "goverify"
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": "/usr/share/gocode",
        "GOCACHE": str(tmp_path / "gocache"),
        "GOFLAGS": "",
        "GOPROXY": "off",
    }
    done = subprocess.run(
        [go, "build", "-o", str(binary), str(SOURCE)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return binary


def run(binary: Path, document: dict[str, object]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary)], input=json.dumps(document), capture_output=True, text=True, timeout=60
    )


def test_go_verifies_the_checkpoint_and_proofs(
    client: TestClient,  # noqa: F811
    database: Database,
    tmp_path: Path,
) -> None:
    binary = build(tmp_path)
    _, token = make_account(database)
    for i in range(40):
        change(client, token, "allow" if i % 2 else "deny")
    publish(database, client.app.state.tlog, force=True)  # type: ignore[attr-defined]
    checkpoint = client.get("/.well-known/consentry/checkpoint").text
    proof = client.get("/v1/me/receipts/7/proof", headers=auth(token)).json()
    size = proof["size"]
    entries = tiles.split_bundle(client.get(f"/tlog/tile/entries/000.p/{size}").content)
    consistency = client.get("/v1/transparency/consistency", params={"from": 13, "to": size}).json()
    document = {
        "log_key": client.get("/.well-known/consentry/checkpoint-key").text.strip(),
        "checkpoint": checkpoint,
        "entry": base64.b64encode(entries[6]).decode(),
        "index": 6,
        "inclusion": proof["proof"],
        "old_size": 13,
        "old_root": consistency["from_root"],
        "consistency": consistency["proof"],
    }
    ok = run(binary, document)
    assert ok.returncode == 0 and ok.stdout.strip() == f"ok {size}", ok.stderr

    # and Go rejects what it should: another entry, a forged signature, another old root
    for changed in (
        {"entry": base64.b64encode(entries[7]).decode()},
        {"checkpoint": checkpoint.replace(f"\n{size}\n", f"\n{size - 1}\n", 1)},
        {"old_root": consistency["to_root"]},
    ):
        assert run(binary, {**document, **changed}).returncode != 0
