"""Citing the log: what documents that depend on the ledger (release manifests and cards, revocation
feeds, data-usage reports, account exports) record, and how a reader proves a citation still holds.

A citation names a signed checkpoint: origin, size, root (hex), the log's verifier key, the names of
the witnesses that cosigned it, and the signed note itself (with the cosignature lines). Anyone holding
it can later ask the log for its current checkpoint and a consistency proof from the cited size: if the
history the citation covers was rewritten, truncated or reordered since, the proof fails (``check``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session

from consentry.errors import IntegrityFailure, InvalidInput
from consentry.transparency import merkle, service
from consentry.transparency.checkpoint import format_proof, parse_checkpoint
from consentry.transparency.models import Checkpoint
from consentry.transparency.note import parse_vkey
from consentry.transparency.verify import Trust, VerifiedCheckpoint, verify_checkpoint

COSIGNATURE_DASH = "\u2014 "


def cosigners(row: Checkpoint) -> list[str]:
    """The key names on a checkpoint's cosignature lines (as attached; each was verified then)."""
    names = []
    for line in row.cosignatures.splitlines():
        if line.startswith(COSIGNATURE_DASH):
            name = line[len(COSIGNATURE_DASH) :].rsplit(" ", 1)[0]
            if name not in names:
                names.append(name)
    return sorted(names)


def citation(row: Checkpoint, *, log_key: str) -> dict[str, Any]:
    """The citation of a stored checkpoint, as documents record it."""
    body = parse_checkpoint(row.note)[0]
    return {
        "origin": body.origin,
        "size": row.size,
        "root": row.root,
        "log_key": log_key,
        "cosigned_by": cosigners(row),
        "checkpoint": service.signed_text(row),
    }


def latest_citation(session: Session, *, log_key: str) -> dict[str, Any] | None:
    """The citation of the latest checkpoint (``None`` before the first one)."""
    row = service.latest_checkpoint(session)
    return None if row is None else citation(row, log_key=log_key)


class LogView(Protocol):
    """Where a citation is checked: the log's current checkpoint and its consistency proofs."""

    def current(self) -> str:
        """The log's latest signed checkpoint (with cosignatures)."""
        ...

    def consistency(self, old: int, new: int) -> list[bytes]:
        """A consistency proof between two tree sizes."""
        ...


class LocalLog:
    """The log as the operator's own database holds it."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def current(self) -> str:
        """The latest stored checkpoint."""
        row = service.latest_checkpoint(self.session)
        if row is None:
            raise IntegrityFailure("the log holds no checkpoint at all: its history was removed")
        return service.signed_text(row)

    def consistency(self, old: int, new: int) -> list[bytes]:
        """The proof from the stored tiles."""
        return service.consistency_proof(self.session, old=old, new=new)


@dataclass(frozen=True)
class CitationCheck:
    """A citation proven consistent with the log's current checkpoint."""

    cited: VerifiedCheckpoint
    current: VerifiedCheckpoint

    @property
    def summary(self) -> str:
        """One sentence for people."""
        old, new = self.cited.checkpoint, self.current.checkpoint
        witnesses = ", ".join(self.current.cosigned_by) or "no trusted witness"
        return (
            f"checkpoint {old.origin} size {old.size} is consistent with the log's current checkpoint "
            f"size {new.size} (cosigned by {witnesses})"
        )


def trust_of(cited: Mapping[str, Any], trust: Trust | None) -> Trust:
    """The trust to check a citation with: the one given, else the log key the citation names."""
    if trust is not None:
        return trust
    vkey = cited.get("log_key")
    if not isinstance(vkey, str):
        raise InvalidInput("the citation names no log key; give one", field="log_key")
    return Trust(parse_vkey(vkey))


def check(cited: Mapping[str, Any], *, log: LogView, trust: Trust | None = None) -> CitationCheck:
    """Prove a cited checkpoint is consistent with the log's current one; ``IntegrityFailure`` naming
    the problem (a citation not signed by the log, a log that shrank, a second root for one size, or
    a current tree that does not extend the cited one: history rewritten)."""
    trust = trust_of(cited, trust)
    text = cited.get("checkpoint")
    if not isinstance(text, str):
        raise InvalidInput("the citation holds no signed checkpoint", field="checkpoint")
    try:
        old = verify_checkpoint(text, Trust(trust.log))
    except (IntegrityFailure, InvalidInput) as error:
        raise IntegrityFailure(f"the cited checkpoint does not verify: {error.detail}") from error
    body = old.checkpoint
    if cited.get("size") != body.size or cited.get("root") != body.root.hex():
        raise IntegrityFailure("the citation's size and root are not those of its signed checkpoint")
    try:
        new = verify_checkpoint(log.current(), trust)
    except (IntegrityFailure, InvalidInput) as error:
        raise IntegrityFailure(f"the log's current checkpoint does not verify: {error.detail}") from error
    now = new.checkpoint
    if now.size < body.size:
        raise IntegrityFailure(
            f"the log was truncated: its current checkpoint has {now.size} entries, the cited one {body.size}"
        )
    if now.size == body.size and now.root != body.root:
        raise IntegrityFailure(f"the log signed two different roots for size {body.size}: a fork")
    try:
        proof = log.consistency(body.size, now.size) if now.size > body.size else []
        merkle.verify_consistency(proof, body.size, body.root, now.size, now.root)
    except IntegrityFailure as error:
        raise IntegrityFailure(
            f"the log's current tree (size {now.size}) does not extend the cited checkpoint (size "
            f"{body.size}): the history it covers was rewritten ({error.detail})"
        ) from error
    return CitationCheck(old, new)


@dataclass(frozen=True)
class InclusionProof:
    """An event's inclusion proof against the latest checkpoint (with its cosignatures)."""

    seq: int
    size: int
    root: str
    proof: tuple[bytes, ...]
    checkpoint: str
    leaf: int | None = None
    """The proven leaf of the signed tree when it is not the event's own (a partitioned ledger)."""
    extra: bytes | None = None
    """A partitioned ledger's first step: the event in its partition's tree (``partitions``)."""

    @property
    def index(self) -> int:
        """The proven leaf index of the signed tree (the event's, with one partition)."""
        return self.seq - 1 if self.leaf is None else self.leaf

    @property
    def text(self) -> str:
        """The C2SP tlog-proof document."""
        return format_proof(self.index, self.proof, self.checkpoint, self.extra)


def inclusion_of(session: Session, *, seq: int) -> InclusionProof | None:
    """The proof that event ``seq`` is in the latest checkpoint's tree (``None``: no checkpoint covers it
    yet). The caller checks that the event is the asker's."""
    found = service.event_proof(session, seq=seq)
    if found is None:
        return None
    row = found.checkpoint
    extra = found.partition.extra if found.partition is not None else None
    return InclusionProof(
        seq, row.size, row.root, tuple(found.proof), service.signed_text(row), found.index, extra
    )
