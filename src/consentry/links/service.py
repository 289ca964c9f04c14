"""Linked accounts: request, confirm, list and remove links; the operator's import; who is linked.

A person links accounts they control: one account asks (``request_link``), the other confirms
(``confirm_link``); only then is the link ``confirmed`` and does a choice made "for every linked
account" reach it. Links are symmetric and direct: a change made from A reaches the accounts A itself
is linked with, never the links of those accounts. Either account may remove a link at any time
(``remove_link``); the choices recorded while it existed stay in the ledger. The operator's own
identity system, which already knows which accounts belong to one person, links by import
(``import_links``): all or nothing.

Every refusal changes nothing: a link to oneself (422), to an account that does not exist (404) or
is deleted (410), deactivated (409), a link that exists already (409), a confirmation of one's own
request or of a request nobody made (409, 404).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from consentry.db import utcnow
from consentry.errors import (
    Conflict,
    ConsentryError,
    FieldError,
    Gone,
    InvalidInput,
    NotFound,
)
from consentry.links.models import AccountLink
from consentry.social.models import Account

MAX_LINKS = 20
"""Links one account may hold (pending and confirmed): one person's accounts, not a network."""


@dataclass(frozen=True)
class LinkView:
    """A link as one of its two accounts sees it."""

    account_id: int
    handle: str
    status: str  # pending | confirmed
    direction: str  # outgoing (this account asked) | incoming (the other asked)
    source: str
    created_at: datetime
    confirmed_at: datetime | None
    account_status: str


def _pair(first: int, second: int) -> tuple[int, int]:
    return (first, second) if first < second else (second, first)


def _row(session: Session, first: int, second: int) -> AccountLink | None:
    low, high = _pair(first, second)
    return session.scalar(select(AccountLink).where(AccountLink.low_id == low, AccountLink.high_id == high))


def _usable(session: Session, account_id: int, *, field: str) -> Account:
    """An account that can take part in a link: it exists, is not deleted and is active."""
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} does not exist", field=field)
    if account.status == "deleted":
        raise Gone(f"account {account_id} is deleted", field=field)
    if account.status != "active":
        raise Conflict(f"account {account_id} is {account.status}; it cannot be linked", field=field)
    return account


def _count(session: Session, account_id: int) -> int:
    query = select(AccountLink.id).where(
        or_(AccountLink.low_id == account_id, AccountLink.high_id == account_id)
    )
    return len(session.scalars(query).all())


def request_link(
    session: Session, *, account_id: int, other_id: int, now: datetime | None = None
) -> AccountLink:
    """Ask to link ``account_id`` with ``other_id``; the link stays ``pending`` until the other confirms."""
    field = "account_id"
    if other_id == account_id:
        raise InvalidInput("an account cannot be linked with itself", field=field)
    _usable(session, account_id, field="account")
    _usable(session, other_id, field=field)
    existing = _row(session, account_id, other_id)
    if existing is not None:
        if existing.status == "confirmed":
            raise Conflict(f"account {other_id} is already linked with this account", field=field)
        if existing.requested_by == account_id:
            raise Conflict(
                f"a link with account {other_id} is already waiting for its confirmation", field=field
            )
        raise Conflict(
            f"account {other_id} already asked to link with this account; confirm it with "
            f"POST /v1/me/links/{other_id}/confirm",
            field=field,
        )
    for who, name in ((account_id, "account"), (other_id, field)):
        if _count(session, who) >= MAX_LINKS:
            raise Conflict(f"account {who} already has {MAX_LINKS} links", field=name)
    low, high = _pair(account_id, other_id)
    link = AccountLink(
        low_id=low,
        high_id=high,
        requested_by=account_id,
        status="pending",
        source="user",
        created_at=now or utcnow(),
    )
    session.add(link)
    session.flush()
    return link


def confirm_link(
    session: Session, *, account_id: int, other_id: int, now: datetime | None = None
) -> AccountLink:
    """Confirm, from ``account_id``, the link ``other_id`` asked for."""
    field = "account_id"
    link = _row(session, account_id, other_id)
    if link is None or other_id == account_id:
        raise NotFound(f"account {other_id} has not asked to link with this account", field=field)
    if link.status == "confirmed":
        raise Conflict(f"the link with account {other_id} is already confirmed", field=field)
    if link.requested_by == account_id:
        raise Conflict(
            f"this account asked for the link; only account {other_id} can confirm it", field=field
        )
    _usable(session, account_id, field="account")
    _usable(session, other_id, field=field)
    link.status, link.confirmed_at = "confirmed", now or utcnow()
    session.flush()
    return link


def remove_link(session: Session, *, account_id: int, other_id: int) -> None:
    """Remove a link (confirmed or pending, asked by either side). The choices recorded stay."""
    link = _row(session, account_id, other_id)
    if link is None or other_id == account_id:
        raise NotFound(f"this account has no link with account {other_id}", field="account_id")
    session.delete(link)
    session.flush()


def drop_links(session: Session, *, account_id: int) -> None:
    """Remove every link of an account (when it is deleted)."""
    session.execute(
        delete(AccountLink).where(or_(AccountLink.low_id == account_id, AccountLink.high_id == account_id))
    )


def links_of(session: Session, *, account_id: int) -> list[LinkView]:
    """Every link of an account, pending and confirmed, oldest first."""
    rows = session.scalars(
        select(AccountLink)
        .where(or_(AccountLink.low_id == account_id, AccountLink.high_id == account_id))
        .order_by(AccountLink.created_at, AccountLink.id)
    ).all()
    others = {row.high_id if row.low_id == account_id else row.low_id for row in rows}
    accounts = {
        account.id: account
        for account in (session.scalars(select(Account).where(Account.id.in_(others))) if others else [])
    }
    views = []
    for row in rows:
        other = row.high_id if row.low_id == account_id else row.low_id
        account = accounts.get(other)
        views.append(
            LinkView(
                account_id=other,
                handle=account.handle if account else "",
                status=row.status,
                direction="outgoing" if row.requested_by == account_id else "incoming",
                source=row.source,
                created_at=row.created_at,
                confirmed_at=row.confirmed_at,
                account_status=account.status if account else "deleted",
            )
        )
    return views


def linked_ids(session: Session, *, account_id: int) -> list[int]:
    """The accounts with a confirmed link to ``account_id`` (not itself), in id order."""
    rows = session.execute(
        select(AccountLink.low_id, AccountLink.high_id).where(
            AccountLink.status == "confirmed",
            or_(AccountLink.low_id == account_id, AccountLink.high_id == account_id),
        )
    ).all()
    return sorted(high if low == account_id else low for low, high in rows)


def linked_ids_many(session: Session, account_ids: Iterable[int]) -> dict[int, list[int]]:
    """``linked_ids`` of many accounts in one query."""
    wanted = set(account_ids)
    found: dict[int, list[int]] = {account_id: [] for account_id in wanted}
    if not wanted:
        return found
    rows = session.execute(
        select(AccountLink.low_id, AccountLink.high_id).where(
            AccountLink.status == "confirmed",
            or_(AccountLink.low_id.in_(wanted), AccountLink.high_id.in_(wanted)),
        )
    ).all()
    for low, high in rows:
        if low in found:
            found[low].append(high)
        if high in found:
            found[high].append(low)
    return {account_id: sorted(others) for account_id, others in found.items()}


@dataclass(frozen=True)
class ImportResult:
    """What an import did."""

    created: int
    confirmed: int


def import_links(
    session: Session,
    pairs: Sequence[tuple[int, int]],
    *,
    source: str = "import",
    now: datetime | None = None,
) -> ImportResult:
    """Link pairs of accounts the operator's identity system knows to be one person's, confirmed at once.

    All or nothing: every problem of every pair is listed (field ``links.N.account_id`` or
    ``links.N.linked_account_id``) and nothing is stored. A pending link between a pair is confirmed;
    a pair that is already linked, or named twice, is refused.
    """
    if not pairs:
        raise InvalidInput("name at least one pair of accounts", field="links")
    now = now or utcnow()
    problems: list[FieldError] = []
    seen: dict[tuple[int, int], int] = {}
    ids = {account_id for pair in pairs for account_id in pair}
    accounts = {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(ids)))}
    rows: list[tuple[tuple[int, int], AccountLink | None]] = []
    for index, (first, second) in enumerate(pairs):
        where = f"links.{index}"
        if first == second:
            problems.append(
                FieldError(f"{where}.linked_account_id", "an account cannot be linked with itself")
            )
            continue
        bad = False
        for account_id, name in ((first, "account_id"), (second, "linked_account_id")):
            try:
                account = accounts.get(account_id)
                if account is None:
                    raise NotFound(f"account {account_id} does not exist")
                if account.status != "active":
                    raise Conflict(f"account {account_id} is {account.status}; it cannot be linked")
            except ConsentryError as error:
                problems.append(FieldError(f"{where}.{name}", error.detail))
                bad = True
        if bad:
            continue
        pair = _pair(first, second)
        if pair in seen:
            problems.append(
                FieldError(f"{where}.linked_account_id", f"the pair is already named at links.{seen[pair]}")
            )
            continue
        seen[pair] = index
        existing = _row(session, first, second)
        if existing is not None and existing.status == "confirmed":
            problems.append(
                FieldError(f"{where}.linked_account_id", f"accounts {first} and {second} are already linked")
            )
            continue
        rows.append((pair, existing))
    if problems:
        raise InvalidInput.of(problems)
    created = confirmed = 0
    for (low, high), existing in rows:
        if existing is not None:
            existing.status, existing.confirmed_at, existing.source = "confirmed", now, source
            confirmed += 1
        else:
            session.add(
                AccountLink(
                    low_id=low,
                    high_id=high,
                    requested_by=low,
                    status="confirmed",
                    source=source,
                    created_at=now,
                    confirmed_at=now,
                )
            )
            created += 1
    session.flush()
    return ImportResult(created=created, confirmed=confirmed)
