"""Revocations: opt-outs and deletions follow released records to their recipients.

When an author opts out of a setting, deletes a post or an assistant interaction, is deleted or
deactivated, or a retention purge removes records, every published release that holds their records gets a
``Revocation`` naming the release, the record ids, the reason and the deadline, and recipients with a
webhook endpoint get a ``revocation.created`` message in the outbox - all in the caller's transaction, so
the revocation exists exactly when the event that caused it does.

Releases are found through their lineage, never by rescanning their shards: the authors' and records'
Roaring bitmaps answer "does this release hold it?" in microseconds, and the (author, record) index names
the records with a binary search. Lineage files never change once a release is published, so each process
keeps them in a ``LineageCache`` after first use.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from pyroaring import BitMap64
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from consentry.consent.catalog import Setting
from consentry.consent.events import OptOuts
from consentry.datasets import lineage
from consentry.datasets.models import Recipient, Release
from consentry.db import Database, utcnow
from consentry.errors import IntegrityFailure, InvalidInput
from consentry.partners import outbox
from consentry.partners.models import REVOCATION_REASONS, Revocation

log = logging.getLogger(__name__)
Ids = Sequence[int] | np.ndarray
ACCOUNT_REASONS = ("opt_out", "account_deleted", "account_deactivated")
RECORD_REASONS = ("post_deleted", "interaction_deleted", "retention_purge")


@dataclass(frozen=True)
class Holder:
    """A published release and the recipient it went to."""

    release_id: str
    path: Path
    purpose: str
    categories: tuple[str, ...]
    delivered_at: datetime
    recipient: Recipient


class LineageCache:
    """Lineage of published releases, loaded once per process (the files are immutable)."""

    def __init__(self) -> None:
        self._bitmaps: dict[tuple[str, str, str], BitMap64] = {}
        self._pairs: dict[tuple[str, str], np.ndarray] = {}
        self._lock = threading.Lock()

    def _bitmap(self, holder: Holder, category: str, kind: str) -> BitMap64:
        key = (holder.release_id, category, kind)
        found = self._bitmaps.get(key)
        if found is None:
            path = (lineage.authors_path if kind == "authors" else lineage.records_path)(
                holder.path, category
            )
            found = lineage.read_bitmap(path)
            with self._lock:
                self._bitmaps[key] = found
        return found

    def authors(self, holder: Holder, category: str) -> BitMap64:
        """Account ids whose records of ``category`` the release holds."""
        return self._bitmap(holder, category, "authors")

    def records(self, holder: Holder, category: str) -> BitMap64:
        """Record ids of ``category`` the release holds."""
        return self._bitmap(holder, category, "records")

    def pairs(self, holder: Holder, category: str) -> np.ndarray:
        """The release's (author, record) index of ``category``, memory-mapped."""
        key = (holder.release_id, category)
        found = self._pairs.get(key)
        if found is None:
            found = lineage.read_by_author(lineage.by_author_path(holder.path, category))
            with self._lock:
                self._pairs[key] = found
        return found

    def clear(self) -> None:
        """Forget everything loaded (tests, or after releases were moved on disk)."""
        with self._lock:
            self._bitmaps.clear()
            self._pairs.clear()


CACHE = LineageCache()


def warm(database: Database) -> int:
    """Load every published release's lineage into ``CACHE`` (run at start-up, off the request path, so
    the first opt-out does not pay for it); returns how many (release, category) pairs were loaded."""
    try:
        with database.read() as session:
            found = holders(session)
    except SQLAlchemyError as error:  # the cache fills on first use instead
        log.warning("could not list releases to warm the lineage cache: %s", error)
        return 0
    loaded = 0
    for holder in found:
        for category in holder.categories:
            try:
                CACHE.authors(holder, category)
                CACHE.records(holder, category)
                CACHE.pairs(holder, category)
            except IntegrityFailure as error:  # reported again, and failed on, when it is needed
                log.warning("lineage of release %s is unreadable: %s", holder.release_id, error)
                continue
            loaded += 1
    return loaded


def holders(session: Session, *, category: str | None = None) -> list[Holder]:
    """Every published release (optionally: holding ``category``), oldest first, with its recipient."""
    rows = session.execute(
        select(Release.id, Release.path, Release.purpose, Release.categories, Release.created_at, Recipient)
        .join(Recipient, Recipient.id == Release.recipient_id)
        .where(Release.status == "published")
        .order_by(Release.created_at, Release.id)
    ).all()
    found = [
        Holder(
            release_id=r[0],
            path=Path(r[1]),
            purpose=r[2],
            categories=tuple(r[3]),
            delivered_at=r[4],
            recipient=r[5],
        )
        for r in rows
    ]
    return [h for h in found if category is None or category in h.categories]


def _check_reason(reason: str, allowed: tuple[str, ...]) -> None:
    if reason not in REVOCATION_REASONS or reason not in allowed:
        raise InvalidInput(f"reason must be one of {', '.join(allowed)}, not {reason!r}", field="reason")


def _ids(values: Ids | None, field: str) -> np.ndarray:
    array = np.asarray(values if values is not None else [], dtype=np.int64)
    if array.ndim != 1:
        raise InvalidInput(f"{field} must be a flat list of ids", field=field)
    return array


def _already_revoked(
    session: Session, *, release_ids: Iterable[str], account_ids: np.ndarray
) -> dict[tuple[str, str], set[int]]:
    """Records already revoked per (release, category) for these accounts (so nothing is revoked twice)."""
    releases = sorted(set(release_ids))
    if not releases or not account_ids.size:
        return {}
    seen: dict[tuple[str, str], set[int]] = defaultdict(set)
    for start in range(0, account_ids.size, 500):
        chunk = [int(a) for a in account_ids[start : start + 500]]
        rows = session.execute(
            select(Revocation.release_id, Revocation.category, Revocation.record_ids).where(
                Revocation.account_id.in_(chunk), Revocation.release_id.in_(releases)
            )
        )
        for release_id, category, record_ids in rows:
            seen[(release_id, category)].update(int(i) for i in record_ids)
    return seen


def _create(
    session: Session,
    *,
    holder: Holder,
    category: str,
    authors: np.ndarray,
    records: np.ndarray,
    reason: str,
    setting: str | None,
    at: datetime,
    seen: dict[tuple[str, str], set[int]],
) -> list[Revocation]:
    """One revocation per account (or one for records of unknown authors) in ``holder``."""
    done = seen.get((holder.release_id, category), set())
    created: list[Revocation] = []
    deadline = at + timedelta(hours=holder.recipient.deletion_deadline_hours)
    groups: dict[int | None, list[int]] = defaultdict(list)
    for author, record in zip(authors.tolist(), records.tolist(), strict=True):
        if record not in done:
            groups[None if author < 0 else author].append(record)
    for account_id, record_ids in groups.items():
        ids = sorted(set(record_ids))
        revocation = Revocation(
            recipient_id=holder.recipient.id,
            release_id=holder.release_id,
            category=category,
            reason=reason,
            setting=setting,
            account_id=account_id,
            record_ids=ids,
            records=len(ids),
            created_at=at,
            deadline_at=deadline,
        )
        created.append(revocation)
    return created


def _publish(session: Session, revocations: list[Revocation], holders_by_release: dict[str, Holder]) -> None:
    """Insert revocations and queue their webhooks (one message per revocation)."""
    if not revocations:
        return
    session.add_all(revocations)
    session.flush()
    for revocation in revocations:
        outbox.enqueue(
            session,
            recipient=holders_by_release[revocation.release_id].recipient,
            event_type="revocation.created",
            data=payload(revocation),
            at=revocation.created_at,
        )


def payload(revocation: Revocation) -> dict[str, object]:
    """What a recipient is told about a revocation (no account ids: recipients know pseudonyms only)."""
    return {
        "id": revocation.id,
        "release": revocation.release_id,
        "category": revocation.category,
        "reason": revocation.reason,
        "record_ids": list(revocation.record_ids),
        "records": revocation.records,
        "created_at": revocation.created_at.isoformat(),
        "deadline": revocation.deadline_at.isoformat(),
    }


def revoke_accounts(
    session: Session,
    *,
    account_ids: Ids,
    reason: str,
    setting: Setting | None = None,
    at: datetime | None = None,
    among: Sequence[Holder] | None = None,
) -> list[Revocation]:
    """Revoke every released record of ``account_ids``.

    With ``setting`` (an opt-out), only releases whose recipient, purpose and category that setting
    covers; otherwise (deletion, deactivation) every release. Records already revoked from a release are
    not revoked again. ``among``: the published releases, when the caller has just read them.
    """
    _check_reason(reason, ACCOUNT_REASONS)
    if reason == "opt_out" and setting is None:
        raise InvalidInput("an opt-out revocation names the setting", field="setting")
    accounts = np.unique(_ids(account_ids, "account_ids"))
    if not accounts.size:
        return []
    at = at or utcnow()
    wanted = lineage.bitmap_of(accounts[accounts >= 0])
    found: list[tuple[Holder, str, np.ndarray]] = []
    for holder in holders(session) if among is None else among:
        for category in holder.categories:
            if setting is not None and not setting.covers(
                recipient=holder.recipient.kind, purpose=holder.purpose, category=category
            ):
                continue
            hit = CACHE.authors(holder, category) & wanted
            if len(hit):
                found.append((holder, category, lineage.ids_of(hit)))
    if not found:
        return []
    seen = _already_revoked(session, release_ids=(h.release_id for h, _, _ in found), account_ids=accounts)
    created: list[Revocation] = []
    for holder, category, ids in found:
        authors, records = lineage.records_of(CACHE.pairs(holder, category), ids)
        created += _create(
            session,
            holder=holder,
            category=category,
            authors=authors,
            records=records,
            reason=reason,
            setting=setting.key if setting else None,
            at=at,
            seen=seen,
        )
    _publish(session, created, {h.release_id: h for h, _, _ in found})
    return created


def revoke_opt_outs(session: Session, change: OptOuts) -> None:
    """Revoke what published releases hold of accounts that opted out (the subscriber of consent's
    ``OptOuts``, called in the transaction that records them)."""
    published = holders(session)
    if not published:  # nothing was ever released: the opt-outs need not even be computed
        return
    for setting, account_ids in change.denied().items():
        revoke_accounts(
            session, account_ids=account_ids, reason="opt_out", setting=setting, at=change.at, among=published
        )


def revoke_records(
    session: Session,
    *,
    category: str,
    record_ids: Ids,
    reason: str,
    account_ids: Ids | None = None,
    at: datetime | None = None,
) -> list[Revocation]:
    """Revoke released records of ``category`` (deleted or purged ones).

    ``account_ids``, when given, is aligned with ``record_ids`` and names each record's author, so the
    account holder's data-usage report can show the revocation.
    """
    _check_reason(reason, RECORD_REASONS)
    records = _ids(record_ids, "record_ids")
    authors = _ids(account_ids, "account_ids") if account_ids is not None else np.full(records.size, -1)
    if authors.size != records.size:
        raise InvalidInput("account_ids must name one author per record", field="account_ids")
    if not records.size:
        return []
    at = at or utcnow()
    wanted = lineage.bitmap_of(records[records >= 0])
    found: list[tuple[Holder, np.ndarray]] = []
    for holder in holders(session, category=category):
        hit = CACHE.records(holder, category) & wanted
        if len(hit):
            found.append((holder, np.isin(records, lineage.ids_of(hit))))
    if not found:
        return []
    seen = _already_revoked(
        session, release_ids=(h.release_id for h, _ in found), account_ids=np.unique(authors[authors >= 0])
    )
    created: list[Revocation] = []
    for holder, mask in found:
        created += _create(
            session,
            holder=holder,
            category=category,
            authors=authors[mask],
            records=records[mask],
            reason=reason,
            setting=None,
            at=at,
            seen=seen,
        )
    _publish(session, created, {h.release_id: h for h, _ in found})
    return created
