"""The transparency log's use cases: checkpoints, proofs, tiles and entry bundles. No HTTP here.

The log's tree size is the ledger's head seq: event ``seq`` is leaf ``seq - 1``, its entry the event's
canonical JSON. Checkpoints are signed with the log's own Ed25519 key (``checkpoint-key.pem`` in the
data folder, separate from the receipt key) under the key name = origin, and every one is kept.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from consentry.config import Settings
from consentry.consent import ledger
from consentry.consent.ledger import canonical_json, document_of
from consentry.consent.models import ConsentEvent, LedgerHead
from consentry.db import utcnow
from consentry.errors import IntegrityFailure, InvalidInput, NotFound
from consentry.transparency import merkle, partitions, store, tiles
from consentry.transparency.checkpoint import Checkpoint as Body
from consentry.transparency.checkpoint import format_proof, parse_checkpoint
from consentry.transparency.models import Checkpoint
from consentry.transparency.note import (
    COSIGNATURE_V1,
    ED25519,
    NoteSigner,
    Verifier,
    parse_note,
    parse_vkey,
    verify_note,
)
from consentry.transparency.tiles import ENTRIES, Tile

KEY_FILE = "checkpoint-key.pem"
VKEY_FILE = "checkpoint-key.vkey"


@dataclass(frozen=True)
class Witness:
    """A witness the operator asks for cosignatures: its submission URL and its verifier key."""

    url: str
    verifier: Verifier


@dataclass(frozen=True)
class LogContext:
    """What the log needs besides the database: its signing key, origin, pace and witnesses."""

    signer: NoteSigner
    interval: timedelta
    witnesses: tuple[Witness, ...] = field(default=())

    @property
    def origin(self) -> str:
        """The origin line (also the key name)."""
        return self.signer.name

    @classmethod
    def from_settings(cls, settings: Settings) -> LogContext:
        """The log of this configuration (creates its key on first use)."""
        return cls(
            signer=load_or_create_key(settings.home, settings.resolved_origin),
            interval=timedelta(seconds=settings.checkpoint_interval_seconds),
            witnesses=tuple(load_witnesses(settings.witnesses_file)),
        )


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write a private key as PKCS#8 PEM, mode 0600, atomically."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.replace(tmp, path)


def load_or_create_key(
    home: Path, name: str, *, file: str = KEY_FILE, vkey_file: str = VKEY_FILE, kind: int = ED25519
) -> NoteSigner:
    """The note signing key in ``home`` (created on first use, private key mode 0600); its verifier
    key is written beside it for publication."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / file
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise IntegrityFailure(f"{path} does not hold an Ed25519 private key")
    else:
        key = Ed25519PrivateKey.generate()
        write_private_key(path, key)
    signer = NoteSigner(name, key, kind)
    (home / vkey_file).write_text(signer.vkey + "\n", "utf-8")
    return signer


def load_witnesses(path: Path | None) -> list[Witness]:
    """The witnesses file: ``{"witnesses": [{"url": ..., "vkey": ...}]}`` (cosigner keys, type 0x04)."""
    if path is None:
        return []
    try:
        data = json.loads(path.read_text("utf-8"))
        entries = data["witnesses"]
        witnesses = [Witness(str(e["url"]).rstrip("/"), parse_vkey(str(e["vkey"]))) for e in entries]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InvalidInput(
            f"cannot read the witnesses file {path}: {error}", field="witnesses_file"
        ) from error
    for witness in witnesses:
        if witness.verifier.kind != COSIGNATURE_V1:
            raise InvalidInput(f"witness {witness.verifier.name} needs a cosigner (0x04) key", field="vkey")
    return witnesses


# --- the tree -----------------------------------------------------------------------------------------


def tree_size(session: Session) -> int:
    """The number of leaves of the signed tree: the ledger head's seq, or with several partitions the
    number of partition state entries (``partitions``)."""
    sizes = session.scalars(select(LedgerHead.seq).order_by(LedgerHead.id).limit(2)).all()
    if not sizes:
        raise IntegrityFailure("the ledger head row is missing; run 'consentry db upgrade'")
    return int(sizes[0]) if len(sizes) == 1 else partitions.log_size(session)


def partition_count(session: Session) -> int:
    """The ledger's number of partitions (one: the signed tree is the ledger's own)."""
    return ledger.partition_count(session)


def entry_of(event: ConsentEvent) -> bytes:
    """The log entry of an event: its canonical JSON (the bytes its chain hash covers)."""
    return canonical_json(document_of(event))


def _check_size(session: Session, size: int, *, field_name: str) -> int:
    current = tree_size(session)
    if not 0 <= size <= current:
        raise InvalidInput(f"{field_name} must be between 0 and the tree size {current}", field=field_name)
    return current


def inclusion_proof(session: Session, *, seq: int, size: int) -> list[bytes]:
    """The audit path of event ``seq`` (leaf ``seq - 1``) in the tree of ``size`` leaves."""
    _check_size(session, size, field_name="size")
    if not 1 <= seq <= size:
        raise InvalidInput(f"event {seq} is not in the tree of size {size}", field="seq")
    return merkle.inclusion_proof(size, seq - 1, store.hash_reader(session, size))


def consistency_proof(session: Session, *, old: int, new: int) -> list[bytes]:
    """The consistency proof from the tree of ``old`` leaves to the one of ``new`` leaves."""
    _check_size(session, new, field_name="to")
    if not 0 <= old <= new:
        raise InvalidInput(f"from ({old}) must be between 0 and to ({new})", field="from")
    return merkle.consistency_proof(old, new, store.hash_reader(session, new))


def partition_consistency_proof(session: Session, *, partition: int, old: int, new: int) -> list[bytes]:
    """The consistency proof between two sizes of one partition's tree (ledgers of several partitions)."""
    heads = ledger.heads(session)
    if len(heads) == 1 or not 0 <= partition < len(heads):
        raise NotFound(f"the ledger has no partition {partition} of its own tree", field="partition")
    current = heads[partition].size
    if not 0 <= new <= current:
        raise InvalidInput(f"to must be between 0 and the partition's size {current}", field="to")
    if not 0 <= old <= new:
        raise InvalidInput(f"from ({old}) must be between 0 and to ({new})", field="from")
    return merkle.consistency_proof(old, new, store.hash_reader(session, new, partition=partition))


def root(session: Session, *, size: int) -> bytes:
    """The root of the tree of ``size`` leaves."""
    _check_size(session, size, field_name="size")
    return store.root(session, size)


def tile_bytes(session: Session, *, path: str) -> tuple[Tile, bytes]:
    """The tile or entry bundle at a tlog-tiles path, as the current tree holds it."""
    tile = tiles.parse_path(path)
    size = tree_size(session)
    have = tiles.tile_width(tile.level, tile.index, size)
    if have < tile.width or (tile.full and have < tiles.TILE_WIDTH):
        raise NotFound(f"{path} does not exist in the tree of size {size}", field="path")
    if tile.level == ENTRIES:
        return tile, entry_bundle(session, tile)
    return tile, store.read_tiles(session, [tile])[0]


def entry_bundle(session: Session, tile: Tile) -> bytes:
    """The entries of events ``[start + 1, start + width]`` as a tlog-tiles entry bundle (with several
    partitions: the partition state entries ``[start, start + width)``)."""
    if partition_count(session) > 1:
        return tiles.entry_bundle(partitions.entries(session, tile.index * tiles.TILE_WIDTH, tile.width))
    first = tile.index * tiles.TILE_WIDTH + 1
    rows = session.scalars(
        select(ConsentEvent)
        .where(ConsentEvent.seq >= first, ConsentEvent.seq < first + tile.width)
        .order_by(ConsentEvent.seq)
    ).all()
    if len(rows) != tile.width or any(row.seq != first + i for i, row in enumerate(rows)):
        raise IntegrityFailure(f"events {first} to {first + tile.width - 1} are not all in the ledger")
    return tiles.entry_bundle(entry_of(row) for row in rows)


def partition_tile_bytes(session: Session, *, partition: int, path: str) -> tuple[Tile, bytes]:
    """A tile or entry bundle of one partition's tree (a ledger of several partitions), at a tlog-tiles
    path: entry ``i`` of partition ``p`` is the event ``seq = i * P + p + 1``."""
    heads = ledger.heads(session)
    if len(heads) == 1 or not 0 <= partition < len(heads):
        raise NotFound(f"the ledger has no partition {partition} of its own tree", field="partition")
    tile = tiles.parse_path(path)
    size = heads[partition].size
    have = tiles.tile_width(tile.level, tile.index, size)
    if have < tile.width or (tile.full and have < tiles.TILE_WIDTH):
        raise NotFound(f"{path} does not exist in partition {partition}'s tree of size {size}", field="path")
    if tile.level != ENTRIES:
        return tile, store.read_tiles(session, [tile], partition=partition)[0]
    count = len(heads)
    wanted = [ledger.seq_of(tile.start + i, partition, count) for i in range(tile.width)]
    rows = session.scalars(
        select(ConsentEvent).where(ConsentEvent.seq.in_(wanted)).order_by(ConsentEvent.seq)
    ).all()
    if [row.seq for row in rows] != wanted:
        raise IntegrityFailure(
            f"the events of partition {partition}'s leaves {tile.start} to {tile.start + tile.width - 1} "
            "are not all in the ledger"
        )
    return tile, tiles.entry_bundle(entry_of(row) for row in rows)


# --- checkpoints -------------------------------------------------------------------------------------


def unsigned_growth(session: Session) -> bool:
    """Whether the ledger holds events no checkpoint covers yet."""
    latest = latest_checkpoint(session)
    if partition_count(session) == 1:
        return tree_size(session) != (latest.size if latest is not None else -1)
    size = partitions.log_size(session)
    if size == 0:
        return latest is None or any(grown for grown, _ in partitions.current_states(session).trees)
    return (
        latest is None
        or latest.size != size
        or partitions.state_at(session, size - 1) != (partitions.current_states(session))
    )


def latest_checkpoint(session: Session) -> Checkpoint | None:
    """The checkpoint of the largest tree."""
    return session.scalars(select(Checkpoint).order_by(Checkpoint.size.desc()).limit(1)).first()


def get_checkpoint(session: Session, size: int) -> Checkpoint:
    """The checkpoint of the tree of ``size`` leaves."""
    row = session.get(Checkpoint, size)
    if row is None:
        raise NotFound(f"no checkpoint of size {size}", field="size")
    return row


def covering_checkpoint(session: Session, *, seq: int) -> Checkpoint | None:
    """The latest checkpoint, if it covers event ``seq`` (``None``: not checkpointed yet)."""
    latest = latest_checkpoint(session)
    return latest if latest is not None and latest.size >= seq else None


@dataclass(frozen=True)
class EventProof:
    """An event's inclusion proof against the latest checkpoint: its leaf in the signed tree, or with
    several partitions its leaf in its partition's tree (``partition``) then the state entry that names
    that tree in the signed tree."""

    index: int
    proof: list[bytes]
    checkpoint: Checkpoint
    partition: partitions.PartitionProof | None = None

    @property
    def tlog_proof(self) -> str:
        """The C2SP tlog-proof (the partition step as its extra data)."""
        extra = self.partition.extra if self.partition is not None else None
        return format_proof(self.index, self.proof, signed_text(self.checkpoint), extra)


def event_proof(session: Session, *, seq: int) -> EventProof | None:
    """The proof of event ``seq`` in the latest checkpoint; ``None`` while no checkpoint covers it."""
    row = latest_checkpoint(session)
    if row is None or row.size == 0:
        return None
    if partition_count(session) == 1:
        if row.size < seq:
            return None
        return EventProof(seq - 1, inclusion_proof(session, seq=seq, size=row.size), row)
    step = partitions.partition_proof(session, seq=seq, log_size=row.size)
    if step is None:
        return None
    top = merkle.inclusion_proof(row.size, row.size - 1, store.hash_reader(session, row.size))
    return EventProof(row.size - 1, top, row, step)


def signed_text(row: Checkpoint) -> str:
    """The checkpoint as served: the log's signed note followed by the witnesses' cosignatures."""
    return row.note + row.cosignatures


_SIGNING_LOCK = 0x636F6E73656E7472  # "consentr": PostgreSQL's advisory lock of checkpoint signing


def _lock_signing(session: Session) -> None:
    """Let one signer at a time decide what to sign (API workers, CLI writes and the publisher thread
    may all try at once); held until the transaction ends. SQLite's write transactions are already one
    at a time."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SIGNING_LOCK})


def make_checkpoint(
    session: Session, *, log: LogContext, force: bool = False, now: datetime | None = None
) -> Checkpoint | None:
    """Sign a checkpoint of the current tree if it grew and the last one is at least the log's interval
    old (``force`` ignores the interval). Returns the new row, or ``None`` when nothing was due."""
    now = now or utcnow()
    _lock_signing(session)
    count = partition_count(session)
    latest = latest_checkpoint(session)
    if count > 1 and (latest is None or force or latest.created_at + log.interval <= now):
        partitions.record_states(session)  # the partitions' trees now, as the next leaf (if they grew)
    size = tree_size(session)
    if latest is not None:
        if latest.size > size:
            raise IntegrityFailure(
                f"the ledger holds {size} events but checkpoint {latest.size} was signed: events were removed"
            )
        if latest.size == size or (not force and latest.created_at + log.interval > now):
            return None
        # never sign a tree that does not extend the last one signed (tlog-checkpoint, "Signatures")
        proof = consistency_proof(session, old=latest.size, new=size)
        merkle.verify_consistency(
            proof, latest.size, bytes.fromhex(latest.root), size, store.root(session, size)
        )
    tree_root = store.root(session, size)
    extensions = (partitions.extension(count),) if count > 1 else ()
    text = Body(log.origin, size, tree_root, extensions).text
    row = Checkpoint(
        size=size, root=tree_root.hex(), note=log.signer.sign(text), cosignatures="", created_at=now
    )
    session.add(row)
    session.flush()
    return row


def add_cosignatures(session: Session, *, size: int, lines: str, witnesses: list[Verifier]) -> int:
    """Attach witness cosignature lines to the checkpoint of ``size`` after verifying them; returns how
    many new ones were kept."""
    row = get_checkpoint(session, size)
    note = parse_note(signed_text(row) + lines)
    verified = verify_note(note, witnesses) if witnesses else []
    have = row.cosignatures
    added = 0
    for item in verified:
        line = item.signature.line
        if line not in have and line not in row.note:
            have += line
            added += 1
    if added:
        session.execute(update(Checkpoint).where(Checkpoint.size == size).values(cosignatures=have))
    return added


def checkpoint_json(row: Checkpoint) -> dict[str, Any]:
    """A checkpoint's fields for JSON documents (manifests, feeds, proofs)."""
    body, _ = parse_checkpoint(row.note)
    return {
        "origin": body.origin,
        "size": row.size,
        "root": row.root,
        "checkpoint": signed_text(row),
        "created_at": row.created_at.isoformat(),
    }
