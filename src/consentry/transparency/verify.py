"""Offline verification for anyone holding the log's public keys: checkpoints (signature, origin,
witness quorum), receipts with their inclusion proofs, consistency between two checkpoints.

Nothing here touches the database: these are the checks an account holder, a monitor or a recipient of
a release runs against what the operator published.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from consentry.consent.ledger import canonical_json
from consentry.consent.receipts import verify_receipt
from consentry.errors import IntegrityFailure, InvalidInput
from consentry.transparency import merkle
from consentry.transparency.checkpoint import Checkpoint, decimal, parse_checkpoint, parse_proof
from consentry.transparency.note import COSIGNATURE_V1, Verifier, verify_note
from consentry.transparency.partitions import EXTENSION, parse_partition_proof, verify_partition_proof


@dataclass(frozen=True)
class Trust:
    """Whom a verifier trusts: the log's key, the witnesses' keys and how many must have cosigned."""

    log: Verifier
    witnesses: tuple[Verifier, ...] = ()
    quorum: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.quorum <= len(self.witnesses):
            raise InvalidInput(
                f"a quorum of {self.quorum} needs at least that many witness keys", field="quorum"
            )
        if any(w.kind != COSIGNATURE_V1 for w in self.witnesses):
            raise InvalidInput("witness keys must be cosigner (0x04) keys", field="witness_key")


@dataclass(frozen=True)
class VerifiedCheckpoint:
    """A checkpoint whose log signature (and witness quorum) verified."""

    checkpoint: Checkpoint
    cosigned_by: tuple[str, ...]
    text: str


def verify_checkpoint(signed: str, trust: Trust) -> VerifiedCheckpoint:
    """Check the log's signature on a checkpoint, that its origin is the log key's name, and that at
    least ``trust.quorum`` trusted witnesses cosigned it."""
    body, note = parse_checkpoint(signed)
    if body.origin != trust.log.name:
        raise IntegrityFailure(f"the checkpoint's origin {body.origin!r} is not the log {trust.log.name!r}")
    verified = verify_note(note, [trust.log, *trust.witnesses])
    if not any(v.verifier == trust.log for v in verified):
        raise IntegrityFailure("the checkpoint is not signed by the log's key")
    witnesses = tuple(sorted({v.verifier.name for v in verified if v.verifier != trust.log}))
    if len(witnesses) < trust.quorum:
        raise IntegrityFailure(
            f"the checkpoint is cosigned by {len(witnesses)} trusted witnesses, {trust.quorum} required"
        )
    return VerifiedCheckpoint(body, witnesses, signed)


@dataclass(frozen=True)
class ReceiptProof:
    """What a verified receipt with its proof establishes."""

    receipt: dict[str, Any]
    checkpoint: VerifiedCheckpoint


def verify_receipt_with_proof(
    signed_receipt: Any, receipt_key: dict[str, Any], tlog_proof: str, trust: Trust
) -> ReceiptProof:
    """Check a receipt end to end: the operator's signature and chain link (``verify_receipt``), that
    the proof is about the receipt's event (leaf ``seq - 1``, entry = the event's canonical JSON),
    the checkpoint's signatures, and the inclusion of the event in the checkpoint's tree."""
    receipt = verify_receipt(signed_receipt, receipt_key)
    proof = parse_proof(tlog_proof)
    seq = receipt["event"].get("seq")
    checkpoint = verify_checkpoint(proof.checkpoint, trust)
    leaf = merkle.leaf_hash(canonical_json(receipt["event"]))
    if not isinstance(seq, int):
        raise IntegrityFailure(f"the receipt's event has no seq ({seq!r})")
    count = partition_count(checkpoint.checkpoint)
    if count > 1 or proof.extra is not None:
        # a partitioned ledger: the event in its partition's tree, that tree in a state entry, the
        # entry in the signed tree
        if proof.extra is None:
            raise IntegrityFailure(
                "the checkpoint is of a partitioned log, but the proof has no partition step"
            )
        step = parse_partition_proof(proof.extra)
        if len(step.states.trees) != count:
            raise IntegrityFailure(
                f"the proof's state lists {len(step.states.trees)} partitions, the checkpoint names {count}"
            )
        leaf = merkle.leaf_hash(verify_partition_proof(step, seq=seq, leaf=leaf))
    elif proof.index != seq - 1:
        raise IntegrityFailure(f"the proof is for leaf {proof.index}, the receipt's event is seq {seq}")
    merkle.verify_inclusion(
        list(proof.proof), checkpoint.checkpoint.size, checkpoint.checkpoint.root, proof.index, leaf
    )
    return ReceiptProof(receipt, checkpoint)


def partition_count(checkpoint: Checkpoint) -> int:
    """The number of partitions a checkpoint's extension line names (one without it)."""
    for line in checkpoint.extensions:
        name, _, value = line.partition(" ")
        if name == EXTENSION:
            return decimal(value, what="checkpoint")
    return 1


def verify_consistent(old: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """Check that the checkpoint ``new`` extends ``old`` (same origin, consistency proof)."""
    if old.origin != new.origin:
        raise IntegrityFailure(f"the checkpoints are of different logs ({old.origin!r}, {new.origin!r})")
    merkle.verify_consistency(proof, old.size, old.root, new.size, new.root)
