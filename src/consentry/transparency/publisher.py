"""Publishing checkpoints: one after write batches at most every interval, cosigned by the witnesses.

``publish`` signs a checkpoint of the current tree when one is due and asks every configured witness
to cosign the latest checkpoint (C2SP tlog-witness ``add-checkpoint``: the old size the witness last
cosigned, a consistency proof from it, the checkpoint). A witness that answers ``409`` with its size is
asked again once with a proof from that size. Cosignatures are verified before they are attached.
``Publisher`` runs ``publish`` on a thread, woken by the consent writer after each committed batch.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import httpx
from sqlalchemy.exc import IntegrityError

from consentry.db import Database
from consentry.errors import ConsentryError
from consentry.transparency import service
from consentry.transparency.note import b64
from consentry.transparency.service import LogContext, Witness

log = logging.getLogger(__name__)


@dataclass
class WitnessOutcome:
    """What one witness answered."""

    witness: str
    ok: bool
    detail: str


def add_checkpoint_body(old: int, proof: list[bytes], checkpoint: str) -> str:
    """The request body of ``add-checkpoint``."""
    return f"old {old}\n" + "".join(b64(h) + "\n" for h in proof) + "\n" + checkpoint


def ask_witness(
    database: Database, witness: Witness, *, size: int, known: dict[str, int], client: httpx.Client
) -> WitnessOutcome:
    """Ask one witness to cosign the checkpoint of ``size``; attach its cosignature if it gives one."""
    name = witness.verifier.name
    for _ in range(2):
        old = min(known.get(name, 0), size)
        with database.read() as session:
            note = service.get_checkpoint(session, size).note
            proof = service.consistency_proof(session, old=old, new=size)
        body = add_checkpoint_body(old, proof, note)
        try:
            response = client.post(f"{witness.url}/add-checkpoint", content=body.encode("utf-8"))
        except httpx.HTTPError as error:
            return WitnessOutcome(name, False, f"unreachable: {error}")
        if response.status_code == 409 and response.headers.get("content-type", "").startswith(
            "text/x.tlog.size"
        ):
            try:
                known[name] = int(response.text.strip())
            except ValueError:
                return WitnessOutcome(name, False, "409 without a size")
            if known[name] > size:
                return WitnessOutcome(name, False, f"the witness has seen size {known[name]} > {size}")
            continue
        if response.status_code != 200:
            return WitnessOutcome(name, False, f"refused ({response.status_code}): {response.text.strip()}")
        try:
            with database.write() as session:
                added = service.add_cosignatures(
                    session, size=size, lines=response.text, witnesses=[witness.verifier]
                )
        except ConsentryError as error:
            return WitnessOutcome(name, False, f"bad cosignature: {error.detail}")
        known[name] = size
        return WitnessOutcome(name, True, f"cosigned size {size}" + ("" if added else " (already held)"))
    return WitnessOutcome(name, False, "the witness's size kept changing")


def publish(
    database: Database,
    log_ctx: LogContext,
    *,
    force: bool = False,
    known: dict[str, int] | None = None,
    timeout: float = 10.0,
) -> tuple[int | None, list[WitnessOutcome]]:
    """Sign a checkpoint if one is due, then collect cosignatures for the latest one.

    Returns the size of the checkpoint signed now (``None`` if none was due) and each witness's answer.
    """
    with database.read() as session:
        due = service.unsigned_growth(session)
    signed: int | None = None
    if due:
        try:
            with database.write() as session:
                row = service.make_checkpoint(session, log=log_ctx, force=force)
                signed = row.size if row is not None else None
        except IntegrityError:  # another publisher (thread, process, node) signed this tree first
            signed = None
    outcomes: list[WitnessOutcome] = []
    if log_ctx.witnesses:
        with database.read() as session:
            latest = service.latest_checkpoint(session)
            latest_size = latest.size if latest is not None else None
        if latest_size is not None:
            known = known if known is not None else {}
            with httpx.Client(timeout=timeout) as client:
                for witness in log_ctx.witnesses:
                    outcome = ask_witness(database, witness, size=latest_size, known=known, client=client)
                    if not outcome.ok:
                        log.warning("witness %s: %s", outcome.witness, outcome.detail)
                    outcomes.append(outcome)
    return signed, outcomes


class Publisher:
    """A thread publishing checkpoints: woken by ``nudge`` after writes, at most once per interval."""

    def __init__(self, database: Database, log_ctx: LogContext) -> None:
        self.database = database
        self.log = log_ctx
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._known: dict[str, int] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread (publishing once straight away)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tlog-publisher", daemon=True)
                self._thread.start()
        self._wake.set()

    def nudge(self) -> None:
        """Something was written: publish when the interval allows."""
        self._wake.set()

    def close(self) -> None:
        """Stop the thread."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=30)

    def _run(self) -> None:
        interval = self.log.interval.total_seconds()
        while not self._stop.is_set():
            self._wake.wait(timeout=interval)
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                signed, _ = publish(self.database, self.log, known=self._known)
                if signed is None:
                    with self.database.read() as session:
                        behind = service.unsigned_growth(session)
                    if behind:  # written since, but too early: try again when the interval has passed
                        self._stop.wait(interval / 2)
                        self._wake.set()
            except Exception:  # a failed round is retried on the next wake-up
                log.exception("publishing a checkpoint failed")
                self._stop.wait(interval)
