"""Verifying the ledger: every partition's chain recomputed, the first bad seq named."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.consent.ledger.chain import (
    GENESIS,
    canonical_json,
    document_of,
    heads,
    partition_of_seq,
)
from consentry.consent.models import ConsentEvent
from consentry.errors import IntegrityFailure


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of verifying the chain."""

    ok: bool
    events: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None


def _stream(session: Session, batch: int) -> Iterator[ConsentEvent]:
    after = 0
    while True:
        rows = session.scalars(
            select(ConsentEvent).where(ConsentEvent.seq > after).order_by(ConsentEvent.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].seq
        session.expunge_all()


def verify(
    session: Session, *, batch: int = 5_000, on_entry: Callable[[int, bytes], None] | None = None
) -> VerifyReport:
    """Recompute every partition's chain; names the first seq that was edited, removed, inserted or
    reordered.

    ``first_bad_seq`` is always a seq the problem is about: an event that exists (edited, inserted,
    out of place) or a seq a head promises and the chain lacks; a problem with a head row alone
    has ``first_bad_seq`` ``None``. ``on_entry`` is told each verified event's seq and entry (its
    canonical JSON), in seq order (the transparency log's audit uses it). The head reported is the
    one holding the greatest seq (the only one, with a single partition).
    """
    try:
        held = heads(session)
    except IntegrityFailure:
        return VerifyReport(False, 0, 0, GENESIS, None, "the ledger head row is missing")
    parts = len(held)
    top = max(held, key=lambda h: h.seq)
    head_seq, head_hash = top.seq, top.hash
    expected = [p + 1 for p in range(parts)]
    prevs = [GENESIS] * parts
    count = 0
    sha256 = hashlib.sha256
    for event in _stream(session, batch):
        count += 1
        p = partition_of_seq(event.seq, parts)
        expected_seq, prev, own = expected[p], prevs[p], held[p].seq
        if event.seq != expected_seq:
            bad = min(event.seq, expected_seq)
            return VerifyReport(False, count, head_seq, head_hash, bad, f"seq {expected_seq} is missing")
        if event.seq > own:
            return VerifyReport(
                False,
                count,
                head_seq,
                head_hash,
                event.seq,
                f"event {event.seq} is after the head (seq {own}): it was added outside the ledger",
            )
        if event.prev_hash != prev:
            return VerifyReport(
                False, count, head_seq, head_hash, event.seq, "prev_hash does not match the previous event"
            )
        entry = canonical_json(document_of(event))
        if sha256(bytes.fromhex(prev) + entry).hexdigest() != event.hash:
            return VerifyReport(
                False, count, head_seq, head_hash, event.seq, "hash does not match the event's content"
            )
        if on_entry is not None:
            on_entry(event.seq, entry)
        prevs[p] = event.hash
        expected[p] += parts
    for head in held:
        last = max(expected[head.partition] - parts, 0)
        where = f" of partition {head.partition}" if parts > 1 else ""
        if last < head.seq:
            after = last + parts if last else head.partition + 1
            missing = f"seq {head.seq} is" if after == head.seq else f"seqs {after} to {head.seq}{where} are"
            return VerifyReport(
                False,
                count,
                head_seq,
                head_hash,
                after,
                f"{missing} missing: the chain ends at seq {last} but the head{where} names seq {head.seq}",
            )
        if prevs[head.partition] != head.hash:
            return VerifyReport(
                False,
                count,
                head_seq,
                head_hash,
                None,
                f"the head{where} names hash {head.hash} for seq {head.seq}, but event {head.seq} has hash "
                f"{prevs[head.partition]}"
                if head.seq
                else f"the head of the empty ledger{where} names hash {head.hash}, not the genesis hash",
            )
    return VerifyReport(True, count, head_seq, head_hash)
