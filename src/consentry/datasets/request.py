"""A build request: every check that needs no lake scan (the API runs them before queueing a job), and
what the recipient already holds when the release is incremental."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pyroaring import BitMap64
from sqlalchemy.orm import Session

from consentry.consent.catalog import PURPOSES
from consentry.datasets import lineage, writer
from consentry.datasets.eligibility import RELEASE_CATEGORIES
from consentry.datasets.engines import ENGINES
from consentry.datasets.engines.spark import spark_master_options
from consentry.datasets.models import Recipient, Release
from consentry.datasets.queries import get_recipient, get_release
from consentry.db import utcnow
from consentry.errors import InvalidInput


def aware(at: datetime | None, field_name: str) -> datetime | None:
    """``at`` itself; ``InvalidInput`` naming ``field_name`` when it has no time zone."""
    if at is not None and at.tzinfo is None:
        raise InvalidInput(f"{field_name} must carry a time zone", field=field_name)
    return at


@dataclass(frozen=True)
class Link:
    """A release of an incremental chain, detached from the session."""

    id: str
    path: str
    categories: tuple[str, ...]


def held_records(
    session: Session, base: Release, categories: Sequence[str]
) -> tuple[dict[str, BitMap64], list[Link]]:
    """What the recipient holds after ``base`` and the releases it builds on, per category."""
    chain: list[Link] = []
    current: Release | None = base
    while current is not None:
        chain.append(Link(current.id, current.path, tuple(current.categories)))
        current = session.get(Release, current.since_release) if current.since_release else None
    chain.reverse()
    held = {category: BitMap64() for category in categories}
    for release in chain:
        folder = Path(release.path)
        for category in categories:
            if category not in release.categories:
                continue
            held[category] |= lineage.read_bitmap(lineage.records_path(folder, category))
            removed = lineage.removed_path(folder, category)
            if removed.exists():
                held[category] -= lineage.read_bitmap(removed)
    return held, chain


@dataclass(frozen=True)
class CheckedRequest:
    """A build request that passed ``check_request``."""

    recipient: Recipient
    categories: list[str]
    as_of: datetime
    base: Release | None


def check_request(
    session: Session,
    *,
    recipient: str,
    purpose: str,
    categories: Sequence[str],
    out: Path,
    as_of: datetime | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    engine: str = "duckdb",
    since_release: str | None = None,
    now: datetime | None = None,
    block_when_overdue: bool = True,
    spark_master: str | None = None,
) -> CheckedRequest:
    """Every check of a build request that needs no lake scan (the API runs it before queueing).

    A suspended recipient gets no release, nor (with ``block_when_overdue``, the setting
    ``block_releases_when_overdue``) one with overdue revocations: ``Conflict`` naming ``recipient``."""
    now = now or utcnow()
    as_of = aware(as_of, "as_of") or now
    since, until = aware(since, "since"), aware(until, "until")
    if as_of > now:
        raise InvalidInput("as_of must not be in the future", field="as_of")
    if since is not None and until is not None and since >= until:
        raise InvalidInput("--since must be before --until", field="since")
    if engine not in ENGINES:
        raise InvalidInput(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}", field="engine")
    if spark_master is not None:
        spark_master_options(spark_master, engine=engine)
    if purpose not in PURPOSES:
        raise InvalidInput(f"unknown purpose {purpose!r}; known: {', '.join(PURPOSES)}", field="purpose")
    wanted = list(dict.fromkeys(categories))
    if not wanted:
        raise InvalidInput("name at least one category", field="categories")
    for category in wanted:
        if category not in RELEASE_CATEGORIES:
            raise InvalidInput(
                f"unknown category {category!r}; releases hold {', '.join(RELEASE_CATEGORIES)}",
                field="categories",
            )
    target = get_recipient(session, recipient)
    from consentry.partners.service import check_can_receive

    check_can_receive(session, recipient=target, now=now, block_when_overdue=block_when_overdue)
    if purpose not in target.purposes:
        raise InvalidInput(
            f"recipient {target.name!r} may not receive data for {purpose!r} "
            f"(allowed: {', '.join(target.purposes)})",
            field="purpose",
        )
    refused = [c for c in wanted if c not in target.categories]
    if refused:
        raise InvalidInput(
            f"recipient {target.name!r} may not receive {', '.join(refused)} "
            f"(allowed: {', '.join(target.categories)})",
            field="categories",
        )
    base = None
    if since_release is not None:
        base = get_release(session, since_release)
        if base.recipient_id != target.id or base.purpose != purpose:
            raise InvalidInput(
                f"release {since_release} was not built for {target.name!r} and {purpose!r}",
                field="since_release",
            )
        if base.status != "published":
            raise InvalidInput(f"release {since_release} is {base.status}", field="since_release")
        if as_of < base.as_of:
            raise InvalidInput(
                f"as_of must not be earlier than that of release {since_release}", field="as_of"
            )
    writer.check_out(Path(out))
    return CheckedRequest(recipient=target, categories=wanted, as_of=as_of, base=base)
