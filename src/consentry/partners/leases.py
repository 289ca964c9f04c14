"""The outbox as a queue shared by workers: claiming due messages under a lease (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL) and recording each attempt's outcome, fenced by the attempt it was claimed with,
so a worker whose lease ran out cannot overwrite a newer attempt.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import Integer, String, Table, Text, bindparam, insert, select, text, update
from sqlalchemy.orm import Session

from consentry.datasets.models import Recipient
from consentry.db import UTCDateTime
from consentry.partners.delivery import (
    Claimed,
    Outcome,
    WorkerStats,
    backoff_seconds,
)
from consentry.partners.models import Delivery, OutboxMessage
from consentry.partners.webhooks import encode_body

log = logging.getLogger("consentry.worker")

_OUTBOX = cast(Table, OutboxMessage.__table__)
_DELIVERIES = cast(Table, Delivery.__table__)
_FENCED_UPDATE = (
    update(_OUTBOX)
    .where(
        _OUTBOX.c.id == bindparam("b_id"),
        _OUTBOX.c.attempts == bindparam("b_attempts", type_=Integer()),
        _OUTBOX.c.status == "pending",
    )
    .values(
        status=bindparam("b_status", type_=String()),
        attempts=bindparam("b_new_attempts", type_=Integer()),
        next_attempt_at=bindparam("b_next", type_=UTCDateTime()),
        delivered_at=bindparam("b_delivered", type_=UTCDateTime()),
        last_error=bindparam("b_error", type_=Text()),
    )
)
"""One outcome: only while the message is pending with the attempts it was claimed with."""

_PG_INSERT_DELIVERIES = text(
    "INSERT INTO webhook_deliveries (outbox_id, attempt, attempted_at, status_code, error, duration_ms) "
    "SELECT * FROM unnest(CAST(:outbox_id AS bigint[]), CAST(:attempt AS integer[]), "
    "CAST(:attempted_at AS timestamp[]), CAST(:status_code AS integer[]), CAST(:error AS text[]), "
    "CAST(:duration_ms AS double precision[]))"
)

_PG_FENCED_UPDATE = text(
    "UPDATE webhook_outbox AS o SET status = c.status, attempts = c.new_attempts, "
    "next_attempt_at = c.next_at, delivered_at = c.delivered_at, last_error = c.error "
    "FROM unnest(CAST(:b_id AS bigint[]), CAST(:b_attempts AS integer[]), "
    "CAST(:b_new_attempts AS integer[]), "
    "CAST(:b_status AS text[]), CAST(:b_next AS timestamp[]), CAST(:b_delivered AS timestamp[]), "
    "CAST(:b_error AS text[])) AS c(id, attempts, new_attempts, status, next_at, delivered_at, error) "
    "WHERE o.id = c.id AND o.attempts = c.attempts AND o.status = 'pending'"
)
"""``_FENCED_UPDATE`` and the delivery rows for a whole batch in one statement each (PostgreSQL)."""


def _arrays(rows: Sequence[Mapping[str, object]]) -> dict[str, list[object]]:
    """Rows as one array per column; timestamps as naive UTC, as ``UTCDateTime`` stores them."""
    return {
        name: [
            value.astimezone(UTC).replace(tzinfo=None) if isinstance(value, datetime) else value
            for value in (row[name] for row in rows)
        ]
        for name in rows[0]
    }


class Leases:
    """Claims and records for one worker: its lease length, attempts and backoff."""

    def __init__(
        self, *, name: str, lease: timedelta, max_attempts: int, base: float, cap: float, rng: random.Random
    ) -> None:
        self.name = name
        self.lease = lease
        self.max_attempts = max_attempts
        self.base = base
        self.cap = cap
        self._rng = rng

    def claim(
        self, session: Session, *, limit: int, now: datetime, exclude: Sequence[int], stats: WorkerStats
    ) -> list[Claimed]:
        """Lease up to ``limit`` due messages, none of the partners ``exclude``; a message whose partner
        has no webhook endpoint or secret is made dead at once, without an attempt."""
        due = (
            select(OutboxMessage.id)
            .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now)
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        if exclude:
            due = due.where(OutboxMessage.recipient_id.not_in(list(exclude)))
        # one statement takes the lease:
        #   WITH due AS MATERIALIZED (SELECT id ... LIMIT n FOR UPDATE SKIP LOCKED)
        #   UPDATE webhook_outbox SET ... WHERE id IN (SELECT id FROM due) RETURNING ...
        # (materialised so PostgreSQL runs the locking SELECT once and the LIMIT holds)
        chosen = due.cte("due").prefix_with("MATERIALIZED", dialect="postgresql")
        leased = session.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.id.in_(select(chosen.c.id)))
            .values(attempts=_OUTBOX.c.attempts + 1, next_attempt_at=now + self.lease)
            .returning(
                _OUTBOX.c.id,
                _OUTBOX.c.message_id,
                _OUTBOX.c.recipient_id,
                _OUTBOX.c.event_type,
                _OUTBOX.c.payload,
                _OUTBOX.c.attempts,
            )
        ).all()
        if not leased:
            return []
        partners = {
            row.id: row
            for row in session.execute(
                select(Recipient.id, Recipient.name, Recipient.webhook_url, Recipient.webhook_secret).where(
                    Recipient.id.in_({row.recipient_id for row in leased})
                )
            )
        }
        claimed, orphans = [], []
        for row in sorted(leased, key=lambda r: r.id):
            partner = partners[row.recipient_id]
            if not partner.webhook_url or not partner.webhook_secret:
                orphans.append((row, partner))
                continue
            claimed.append(
                Claimed(
                    id=row.id,
                    message_id=row.message_id,
                    recipient_id=row.recipient_id,
                    partner=partner.name,
                    url=partner.webhook_url,
                    secret=partner.webhook_secret,
                    event_type=row.event_type,
                    body=encode_body(row.payload),
                    attempt=row.attempts,
                )
            )
        for row, partner in orphans:
            reason = "no webhook endpoint" if not partner.webhook_url else "no webhook signing secret"
            session.execute(
                update(_OUTBOX)
                .where(_OUTBOX.c.id == row.id)
                .values(
                    status="dead",
                    attempts=row.attempts - 1,
                    last_error=f"not sent: partner {partner.name} has {reason}",
                )
            )
            log.warning(
                "%s: %s dead without an attempt: %s has %s", self.name, row.message_id, partner.name, reason
            )
        stats.skipped += len(orphans)
        return claimed

    def record(
        self, session: Session, outcomes: Sequence[Outcome], now: datetime, stats: WorkerStats
    ) -> None:
        """Write the attempts and the messages' new states (fenced: a message claimed again since is
        left alone)."""
        attempts = [
            {
                "outbox_id": o.claimed.id,
                "attempt": o.claimed.attempt,
                "attempted_at": o.attempted_at,
                "status_code": o.status_code,
                "error": o.error,
                "duration_ms": round(o.duration_ms, 3),
            }
            for o in outcomes
            if o.kind != "released"
        ]
        changes = [self._change(o, now, stats) for o in outcomes]
        if session.get_bind().dialect.name == "postgresql":
            # one statement each, whatever the batch size: arrays through unnest (a fixed, cached statement)
            if attempts:
                session.execute(_PG_INSERT_DELIVERIES, _arrays(attempts))
            updated = session.execute(_PG_FENCED_UPDATE, _arrays(changes)).rowcount  # type: ignore[attr-defined]
        else:  # SQLite: executemany of one prepared statement, in process
            if attempts:
                session.connection().execute(insert(_DELIVERIES), attempts)
            updated = session.connection().execute(_FENCED_UPDATE, changes).rowcount
        if updated is not None and 0 <= updated < len(changes):
            log.info(
                "%s: %d outcomes ignored: their messages were claimed again after the lease ran out",
                self.name,
                len(changes) - updated,
            )

    def _change(self, outcome: Outcome, now: datetime, stats: WorkerStats) -> dict[str, object]:
        item = outcome.claimed
        change: dict[str, object] = {
            "b_id": item.id,
            "b_attempts": item.attempt,
            "b_new_attempts": item.attempt,
            "b_status": "pending",
            "b_next": now,
            "b_delivered": None,
            "b_error": outcome.error,
        }
        where = f"{item.message_id} ({item.event_type}) to {item.partner}"
        if outcome.kind == "delivered":
            change.update(b_status="delivered", b_delivered=now, b_error=None)
            stats.delivered += 1
            log.debug(
                "%s: %s delivered: HTTP %s in %.0f ms",
                self.name,
                where,
                outcome.status_code,
                outcome.duration_ms,
            )
        elif outcome.kind == "released":
            change.update(b_new_attempts=item.attempt - 1, b_error=None)
            stats.released += 1
        elif item.attempt >= self.max_attempts:
            change.update(b_status="dead")
            stats.failed += 1
            stats.dead += 1
            log.warning("%s: %s dead after %d attempts: %s", self.name, where, item.attempt, outcome.error)
        else:
            wait = backoff_seconds(item.attempt, base=self.base, cap=self.cap, rng=self._rng)
            change.update(b_next=now + timedelta(seconds=wait))
            stats.failed += 1
            log.info(
                "%s: %s attempt %d/%d failed: %s; next in %.1f s",
                self.name,
                where,
                item.attempt,
                self.max_attempts,
                outcome.error,
                wait,
            )
        return change
