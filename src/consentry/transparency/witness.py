"""A witness: an independent process that cosigns a log's checkpoint only when it is consistent with
the last one it cosigned (C2SP tlog-witness ``add-checkpoint``, tlog-cosignature ``cosignature/v1``).

It has its own Ed25519 key and its own SQLite state file, and knows nothing of the operator's database:
anyone (a regulator, a civil-society group) can run one. For each log it trusts (by the log's
verifier key, whose name is the log's origin) it keeps the latest cosigned size and root; checking and
updating them is one ``BEGIN IMMEDIATE`` transaction, so two requests never roll the state back. Every
refusal with a valid log signature is recorded as possible evidence of misbehaviour.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from consentry.db import utcnow
from consentry.errors import ConsentryError
from consentry.transparency import merkle
from consentry.transparency.checkpoint import decimal, parse_checkpoint
from consentry.transparency.note import NoteSigner, Verifier, unb64, verify_note

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024
MAX_PROOF = 63

SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL,
                                 checkpoint TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refusals (id INTEGER PRIMARY KEY, at TEXT NOT NULL, origin TEXT NOT NULL,
                                     status INTEGER NOT NULL, reason TEXT NOT NULL, request TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Answer:
    """The witness's answer to one request: HTTP status, body, media type."""

    status: int
    body: str
    media_type: str = "text/plain; charset=utf-8"


class Witness:
    """The witness's key, trusted logs and state file."""

    def __init__(self, signer: NoteSigner, logs: list[Verifier], state: Path) -> None:
        self.signer = signer
        self.logs = {v.name: v for v in logs}
        self.state = state
        with self._connect() as connection:
            connection.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.state, timeout=30, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        return connection

    def latest(self, origin: str) -> tuple[int, bytes | None]:
        """The latest cosigned size and root of a log (``0, None`` before the first)."""
        with self._connect() as connection:
            row = connection.execute("SELECT size, root FROM logs WHERE origin = ?", (origin,)).fetchone()
        return (int(row[0]), bytes(row[1])) if row else (0, None)

    def refusals(self) -> list[dict[str, Any]]:
        """Every refusal recorded, oldest first."""
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT at, origin, status, reason FROM refusals ORDER BY id"
            ).fetchall()
        return [{"at": a, "origin": o, "status": s, "reason": r} for a, o, s, r in rows]

    def add_checkpoint(self, body: str) -> Answer:
        """Handle an ``add-checkpoint`` request body."""
        try:
            old, proof, signed = _parse_request(body)
            checkpoint, note = parse_checkpoint(signed)
        except ConsentryError as error:
            return Answer(400, f"malformed request: {error.detail}\n")
        verifier = self.logs.get(checkpoint.origin)
        if verifier is None:
            return Answer(404, f"unknown log {checkpoint.origin}\n")
        try:
            verify_note(note, [verifier])
        except ConsentryError:
            return Answer(403, "the checkpoint carries no valid signature by the log's key\n")
        if old > checkpoint.size:
            return Answer(400, f"old size {old} is above the checkpoint's size {checkpoint.size}\n")
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            row = connection.execute(
                "SELECT size, root FROM logs WHERE origin = ?", (checkpoint.origin,)
            ).fetchone()
            known, known_root = (int(row[0]), bytes(row[1])) if row else (0, None)
            if old != known:
                connection.execute("ROLLBACK")
                return Answer(409, f"{known}\n", "text/x.tlog.size")
            reason = None
            status = 200
            if old == checkpoint.size and known_root is not None and known_root != checkpoint.root:
                status, reason = 409, f"fork: a different root for size {old}, which was cosigned before"
            else:
                try:
                    merkle.verify_consistency(
                        proof, old, known_root or merkle.EMPTY_ROOT, checkpoint.size, checkpoint.root
                    )
                except ConsentryError as error:
                    status, reason = 422, f"not consistent with size {old} cosigned before: {error.detail}"
            if reason is not None:
                connection.execute(
                    "INSERT INTO refusals (at, origin, status, reason, request) VALUES (?, ?, ?, ?, ?)",
                    (utcnow().isoformat(), checkpoint.origin, status, reason, body),
                )
                connection.execute("COMMIT")
                log.warning("refused %s at size %d: %s", checkpoint.origin, checkpoint.size, reason)
                return Answer(status, reason + "\n")
            connection.execute(
                "INSERT INTO logs (origin, size, root, checkpoint, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root, "
                "checkpoint = excluded.checkpoint, updated_at = excluded.updated_at",
                (checkpoint.origin, checkpoint.size, checkpoint.root, signed, utcnow().isoformat()),
            )
            line = self.signer.signature_line(checkpoint.text)
            connection.execute("COMMIT")  # persisted before answering
            return Answer(200, line)
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        finally:
            connection.close()


def _parse_request(body: str) -> tuple[int, list[bytes], str]:
    head, sep, signed = body.partition("\n\n")
    if not sep:
        raise ConsentryError("no blank line before the checkpoint")
    lines = head.split("\n")
    if not lines[0].startswith("old "):
        raise ConsentryError("the first line is 'old <size>'")
    old = decimal(lines[0][4:], what="old")
    proof = [unb64(line, what="proof") for line in lines[1:]]
    if len(proof) > MAX_PROOF or any(len(h) != merkle.HASH_SIZE for h in proof):
        raise ConsentryError("at most 63 consistency proof lines of 32-byte hashes")
    if old == 0 and proof:
        raise ConsentryError("the proof must be empty when the old size is 0")
    return old, proof, signed


def create_app(witness: Witness) -> Starlette:
    """The witness's HTTP interface: ``POST /add-checkpoint`` and ``GET /refusals``."""

    async def add_checkpoint(request: Request) -> Response:
        data = await request.body()
        if len(data) > MAX_BODY:
            return PlainTextResponse("request too large\n", status_code=413)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return PlainTextResponse("the body is not UTF-8\n", status_code=400)
        answer = witness.add_checkpoint(text)
        return Response(answer.body, status_code=answer.status, media_type=answer.media_type)

    async def refusals(request: Request) -> Response:
        lines = [f"{r['at']} {r['origin']} {r['status']} {r['reason']}" for r in witness.refusals()]
        return PlainTextResponse("".join(line + "\n" for line in lines))

    async def key(request: Request) -> Response:
        return PlainTextResponse(witness.signer.vkey + "\n")

    return Starlette(
        routes=[
            Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
            Route("/refusals", refusals, methods=["GET"]),
            Route("/key", key, methods=["GET"]),
        ]
    )
