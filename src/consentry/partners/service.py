"""Partner use cases: the registry, API keys, what a partner may read, acknowledgements, overdue report.

A partner is a ``Recipient`` of the datasets domain with its partner columns filled in (status, deletion
deadline, webhook endpoint); ``add_partner`` creates it through ``datasets.service.add_recipient``.

A partner authenticates with an API key (``cpk_...``, stored as SHA-256 only) and sees its own published
releases and its own revocations, nothing else: anything of another partner is "not found", exactly as if
it did not exist. It attests each revocation's deletion once; repeating an acknowledgement returns the
first attestation and changes nothing. Revocations past their deadline without acknowledgement are
*overdue*; while a partner has any (and ``block_releases_when_overdue`` is on), or while it is suspended,
``check_can_receive`` refuses it new releases.

Every function takes the caller's session and never commits.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from consentry.datasets import service as datasets
from consentry.datasets.models import Recipient, Release
from consentry.db import utcnow
from consentry.errors import (
    Conflict,
    Forbidden,
    IntegrityFailure,
    InvalidInput,
    NotFound,
    Unauthenticated,
)
from consentry.ids import parse_id
from consentry.partners import keys
from consentry.partners.models import PartnerKey, Revocation
from consentry.partners.schemas import (
    AckOut,
    KeyOut,
    OverduePartner,
    OverdueRelease,
    OverdueReport,
    PartnerDetail,
    PartnerOut,
    ReleaseFile,
    RevocationCounts,
    RevocationOut,
    RevocationPage,
)
from consentry.transparency.cite import latest_citation
from consentry.transparency.schemas import CheckpointCitation

STATUSES = ("active", "suspended")
MAX_DEADLINE_HOURS = 24 * 366
"""Longest deletion deadline accepted (a year): longer ones would not be a deadline in any real sense."""
MAX_URL_CHARS = 2048
RESERVED_NAMES = frozenset({"overdue"})
"""Partner names the admin API uses as paths (``/v1/admin/partners/overdue``)."""
TOUCH_INTERVAL = timedelta(seconds=60)
"""``last_used_at`` is written at most this often per key, so reads stay reads."""
MANIFEST = "manifest.json"
PRIVATE_FOLDERS = ("lineage/",)
"""Files of a release never served to its partner: lineage names real account ids."""
MEDIA_TYPES = {
    ".parquet": "application/vnd.apache.parquet",
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
}
CURSOR = re.compile(r"^[0-9]{1,18}$")

# --- validation ---------------------------------------------------------------------------------------


def check_webhook_url(url: str, *, field: str = "webhook_url") -> str:
    """A webhook URL as given, if it is ``http``/``https`` with a host (and nothing odd in it)."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS:
        raise InvalidInput(f"the webhook URL must be 1-{MAX_URL_CHARS} characters", field=field)
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise InvalidInput("the webhook URL must not contain spaces or control characters", field=field)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as error:
        raise InvalidInput(f"the webhook URL is malformed: {error}", field=field) from error
    if parts.scheme not in ("http", "https"):
        raise InvalidInput("the webhook URL must start with http:// or https://", field=field)
    if not parts.hostname:
        raise InvalidInput("the webhook URL must name a host", field=field)
    return url


def check_deadline_hours(hours: int, *, field: str = "deadline_hours") -> int:
    """A deletion deadline in whole hours: a positive integer (at most a year)."""
    if isinstance(hours, bool) or not isinstance(hours, int) or not 1 <= hours <= MAX_DEADLINE_HOURS:
        raise InvalidInput(
            f"the deletion deadline must be a whole number of hours from 1 to {MAX_DEADLINE_HOURS}",
            field=field,
        )
    return hours


def check_webhook_secret(secret: str) -> str:
    """A webhook secret as given, if valid (see ``keys.check_webhook_secret``)."""
    return keys.check_webhook_secret(secret, field="webhook_secret")


# --- registry -----------------------------------------------------------------------------------------


def get_partner(session: Session, name: str) -> Recipient:
    """The partner called ``name``, or ``NotFound``."""
    partner = session.scalar(select(Recipient).where(Recipient.name == name))
    if partner is None:
        raise NotFound(f"unknown partner {name!r}; add it with 'consentry partner add'", field="partner")
    return partner


def list_partners(session: Session) -> list[Recipient]:
    """Every partner (every recipient of releases), by name."""
    return datasets.list_recipients(session)


def add_partner(
    session: Session,
    *,
    name: str,
    kind: str = "third_party",
    purposes: list[str],
    categories: list[str],
    deadline_hours: int = 72,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    now: datetime | None = None,
) -> tuple[Recipient, str | None]:
    """Register a partner; returns it and the webhook secret if one was generated (shown once).

    Everything is validated before anything is written."""
    if name in RESERVED_NAMES:
        raise InvalidInput(f"{name!r} is reserved; choose another name", field="name")
    check_deadline_hours(deadline_hours)
    if webhook_url is not None:
        check_webhook_url(webhook_url)
    generated = None
    if webhook_secret is not None:
        if webhook_url is None:
            raise InvalidInput("a webhook secret needs a webhook URL", field="webhook_url")
        check_webhook_secret(webhook_secret)
    elif webhook_url is not None:
        webhook_secret = generated = keys.new_webhook_secret()
    partner = datasets.add_recipient(
        session, name=name, kind=kind, purposes=purposes, categories=categories, now=now
    )
    partner.status = "active"
    partner.deletion_deadline_hours = deadline_hours
    partner.webhook_url = webhook_url
    partner.webhook_secret = webhook_secret
    session.flush()
    return partner, generated


def update_partner(
    session: Session,
    *,
    name: str,
    deadline_hours: int | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    rotate_secret: bool = False,
    remove_webhook: bool = False,
) -> tuple[Recipient, str | None]:
    """Change a partner's deletion deadline or webhook; returns it and a generated secret, if any.

    A new URL keeps the current secret (or gets a generated one if there is none); ``rotate_secret``
    generates a new secret; ``remove_webhook`` clears URL and secret. A new deadline applies to
    revocations created from now on."""
    partner = get_partner(session, name)
    if deadline_hours is not None:
        check_deadline_hours(deadline_hours)
    if remove_webhook and (webhook_url is not None or webhook_secret is not None or rotate_secret):
        raise InvalidInput("removing the webhook cannot be combined with setting it", field="webhook_url")
    if webhook_url is not None:
        check_webhook_url(webhook_url)
    if webhook_secret is not None:
        check_webhook_secret(webhook_secret)
        if rotate_secret:
            raise InvalidInput("give a webhook secret or rotate it, not both", field="rotate_secret")
    url = webhook_url or partner.webhook_url
    if (webhook_secret is not None or rotate_secret) and url is None:
        raise InvalidInput("set a webhook URL first", field="webhook_url")
    generated = None
    if deadline_hours is not None:
        partner.deletion_deadline_hours = deadline_hours
    if remove_webhook:
        partner.webhook_url = None
        partner.webhook_secret = None
    elif url is not None:
        partner.webhook_url = url
        if webhook_secret is not None:
            partner.webhook_secret = webhook_secret
        elif rotate_secret or not partner.webhook_secret:
            partner.webhook_secret = generated = keys.new_webhook_secret()
    session.flush()
    return partner, generated


def set_status(session: Session, *, name: str, status: str) -> Recipient:
    """Suspend (``suspended``) or resume (``active``) a partner; idempotent.

    A suspended partner's API keys get 403 on releases and it gets no new release; it can still read
    and acknowledge its revocations, since its duty to delete does not pause."""
    if status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", field="status")
    partner = get_partner(session, name)
    partner.status = status
    session.flush()
    return partner


def partner_out(partner: Recipient) -> PartnerOut:
    """The API shape of a partner (no secrets)."""
    return PartnerOut(
        id=partner.id,
        name=partner.name,
        kind=partner.kind,
        status=partner.status,
        purposes=list(partner.purposes),
        categories=list(partner.categories),
        deadline_hours=partner.deletion_deadline_hours,
        webhook_url=partner.webhook_url,
        webhook_secret_set=bool(partner.webhook_secret),
        created_at=partner.created_at,
    )


def revocation_counts(
    session: Session, *, recipient_id: int, now: datetime | None = None
) -> RevocationCounts:
    """A partner's revocations by state (``pending``, ``overdue``, ``acknowledged``)."""
    now = now or utcnow()
    open_ = Revocation.acknowledged_at.is_(None)
    total, acknowledged, overdue = session.execute(
        select(
            func.count(),
            func.count(Revocation.acknowledged_at),
            func.coalesce(func.sum(case((and_(open_, Revocation.deadline_at < now), 1), else_=0)), 0),
        ).where(Revocation.recipient_id == recipient_id)
    ).one()
    return RevocationCounts(
        pending=int(total) - int(acknowledged) - int(overdue),
        overdue=int(overdue),
        acknowledged=int(acknowledged),
    )


def partner_detail(session: Session, partner: Recipient, *, now: datetime | None = None) -> PartnerDetail:
    """A partner with its keys (newest first) and its revocations by state."""
    return PartnerDetail(
        **partner_out(partner).model_dump(),
        keys=[KeyOut.model_validate(k) for k in list_keys(session, partner=partner.name)],
        revocations=revocation_counts(session, recipient_id=partner.id, now=now),
    )


# --- API keys -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartnerPrincipal:
    """The partner behind an API key."""

    recipient_id: int
    name: str
    status: str
    key_id: int
    last_used_at: datetime | None

    @property
    def suspended(self) -> bool:
        """Whether the partner is suspended."""
        return self.status != "active"


def create_key(
    session: Session, *, partner: str, label: str = "", now: datetime | None = None
) -> tuple[PartnerKey, str]:
    """Issue an API key for ``partner``; the key is returned this once and stored as SHA-256."""
    target = get_partner(session, partner)
    if len(label) > 100:
        raise InvalidInput("a key label is at most 100 characters", field="label")
    key = keys.new_key()
    row = PartnerKey(
        recipient_id=target.id,
        prefix=keys.key_prefix(key),
        key_hash=keys.hash_key(key),
        label=label,
        created_at=now or utcnow(),
    )
    session.add(row)
    session.flush()
    return row, key


def list_keys(session: Session, *, partner: str) -> list[PartnerKey]:
    """A partner's keys, newest first (revoked ones included)."""
    target = get_partner(session, partner)
    return list(
        session.scalars(
            select(PartnerKey)
            .where(PartnerKey.recipient_id == target.id)
            .order_by(PartnerKey.created_at.desc(), PartnerKey.id.desc())
        )
    )


def revoke_key(session: Session, *, partner: str, key: str, now: datetime | None = None) -> PartnerKey:
    """Revoke one of ``partner``'s keys, named by id or by its listed prefix; idempotent."""
    target = get_partner(session, partner)
    query = select(PartnerKey).where(PartnerKey.recipient_id == target.id)
    if key.isascii() and key.isdigit():
        number = parse_id(key)
        rows = list(session.scalars(query.where(PartnerKey.id == number))) if number is not None else []
    else:
        rows = list(session.scalars(query.where(PartnerKey.prefix == key)))
    if not rows:
        raise NotFound(f"partner {partner!r} has no key {key!r}", field="key")
    if len(rows) > 1:
        raise Conflict(f"several keys start with {key!r}; name the key by id", field="key")
    row = rows[0]
    if row.revoked_at is None:
        row.revoked_at = now or utcnow()
        session.flush()
    return row


def authenticate(session: Session, *, key: str) -> PartnerPrincipal:
    """The partner of an API key; ``Unauthenticated`` if the key is unknown or revoked.

    Suspension is the caller's to enforce (``PartnerPrincipal.suspended``)."""
    row = session.scalar(select(PartnerKey).where(PartnerKey.key_hash == keys.hash_key(key)))
    if row is None or row.revoked_at is not None:
        raise Unauthenticated("the partner API key is unknown or revoked")
    partner = session.get(Recipient, row.recipient_id)
    if partner is None:
        raise Unauthenticated("the partner of this key no longer exists")
    return PartnerPrincipal(
        recipient_id=partner.id,
        name=partner.name,
        status=partner.status,
        key_id=row.id,
        last_used_at=row.last_used_at,
    )


def needs_touch(principal: PartnerPrincipal, *, now: datetime) -> bool:
    """Whether the key's ``last_used_at`` is stale enough to be written again."""
    return principal.last_used_at is None or principal.last_used_at <= now - TOUCH_INTERVAL


def touch_key(session: Session, *, key_id: int, now: datetime | None = None) -> None:
    """Record that a key was used (at most once per ``TOUCH_INTERVAL``; concurrent requests agree)."""
    now = now or utcnow()
    session.execute(
        update(PartnerKey)
        .where(
            PartnerKey.id == key_id,
            or_(PartnerKey.last_used_at.is_(None), PartnerKey.last_used_at <= now - TOUCH_INTERVAL),
        )
        .values(last_used_at=now)
    )


def forbid_suspended(principal: PartnerPrincipal) -> PartnerPrincipal:
    """The principal, unless its partner is suspended (``Forbidden``)."""
    if principal.suspended:
        raise Forbidden(f"partner {principal.name!r} is suspended; releases are not available")
    return principal


# --- releases, as the partner sees them -----------------------------------------------------------------


def partner_releases(session: Session, *, recipient_id: int, limit: int = 100) -> list[Release]:
    """The partner's published releases, newest first."""
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000", field="limit")
    return list(
        session.scalars(
            select(Release)
            .where(Release.recipient_id == recipient_id, Release.status == "published")
            .order_by(Release.created_at.desc(), Release.id.desc())
            .limit(limit)
        )
    )


def partner_release(session: Session, *, recipient_id: int, release_id: str) -> Release:
    """One of the partner's published releases; ``NotFound`` for anything else (another partner's
    release is indistinguishable from a missing one)."""
    release = session.get(Release, release_id)
    if release is None or release.recipient_id != recipient_id or release.status != "published":
        raise NotFound(f"no release {release_id!r}", field="release_id")
    return release


def load_manifest(release: Release) -> tuple[dict[str, Any], bytes]:
    """The manifest of a release and its bytes, checked against the SHA-256 recorded at publication."""
    path = Path(release.path) / MANIFEST
    try:
        data = path.read_bytes()
    except OSError as error:
        raise IntegrityFailure(f"cannot read the manifest of {release.id}: {error}", field="path") from error
    if hashlib.sha256(data).hexdigest() != release.manifest_sha256:
        raise IntegrityFailure(f"the manifest of {release.id} differs from the one published", field="path")
    manifest: dict[str, Any] = json.loads(data)
    return manifest, data


def _servable(path: str) -> bool:
    return not path.startswith(PRIVATE_FOLDERS)


def release_files(release: Release, manifest: dict[str, Any], manifest_bytes: bytes) -> list[ReleaseFile]:
    """The files of a release its partner may download: ``manifest.json`` and every file the manifest
    lists, except lineage (which names real account ids)."""
    files = [ReleaseFile(path=MANIFEST, size=len(manifest_bytes), sha256=release.manifest_sha256)]
    for entry in manifest.get("files", []):
        path = str(entry["path"])
        if _servable(path):
            files.append(
                ReleaseFile(
                    path=path, size=int(entry["bytes"]), sha256=str(entry["sha256"]), rows=entry.get("rows")
                )
            )
    return files


def release_summary(release: Release, manifest: dict[str, Any], manifest_bytes: bytes) -> dict[str, Any]:
    """The fields of ``PartnerRelease`` for one release."""
    files = release_files(release, manifest, manifest_bytes)
    return {
        "id": release.id,
        "purpose": release.purpose,
        "categories": list(release.categories),
        "as_of": release.as_of,
        "since": release.since,
        "until": release.until,
        "since_release": release.since_release,
        "created_at": release.created_at,
        "rows": {str(k): int(v) for k, v in manifest.get("rows", {}).items()},
        "removals": release.removals,
        "files": len(files),
        "bytes": sum(f.size for f in files),
        "manifest_sha256": release.manifest_sha256,
    }


@dataclass(frozen=True)
class ServedFile:
    """A release file ready to be sent: where it is, how big, its SHA-256 (from the manifest)."""

    path: Path
    name: str
    size: int
    sha256: str
    media_type: str


def release_file(
    release: Release, manifest: dict[str, Any], manifest_bytes: bytes, *, path: str
) -> ServedFile:
    """The file ``path`` of a release, if the partner may download it; ``NotFound`` otherwise.

    Only exact paths the manifest lists are served, so nothing outside the release folder (or inside it
    but unlisted, or lineage) can be named; the resolved file must also stay inside the folder."""
    listed = {f.path: f for f in release_files(release, manifest, manifest_bytes)}
    entry = listed.get(path)
    if entry is None:
        raise NotFound(f"release {release.id} has no file {path!r}", field="path")
    folder = Path(release.path).resolve()
    target = (folder / entry.path).resolve()
    if not target.is_relative_to(folder) or not target.is_file():
        raise NotFound(f"release {release.id} has no file {path!r}", field="path")
    size = target.stat().st_size
    if size != entry.size:
        raise IntegrityFailure(
            f"{path} of {release.id} has {size} bytes, its manifest says {entry.size}", field="path"
        )
    return ServedFile(
        path=target,
        name=target.name,
        size=size,
        sha256=entry.sha256,
        media_type=MEDIA_TYPES.get(target.suffix, "application/octet-stream"),
    )


# --- revocations, as the partner sees them --------------------------------------------------------------


def revocation_out(revocation: Revocation) -> RevocationOut:
    """A revocation as its partner sees it (no account id, no setting)."""
    return RevocationOut(
        id=revocation.id,
        release=revocation.release_id,
        category=revocation.category,
        reason=revocation.reason,
        record_ids=[int(i) for i in revocation.record_ids],
        records=revocation.records,
        created_at=revocation.created_at,
        deadline_at=revocation.deadline_at,
        acknowledged=revocation.acknowledged_at is not None,
        acknowledged_at=revocation.acknowledged_at,
        deleted_at=revocation.deleted_at,
        method=revocation.ack_method,
        note=revocation.ack_note,
    )


def parse_cursor(after: str | None) -> int:
    """The revocation id a feed cursor stands for (0 for the start); ``InvalidInput`` naming ``after``."""
    if after is None or after == "":
        return 0
    if not CURSOR.match(after):
        raise InvalidInput(f"{after!r} is not a cursor of this feed; pass a next_cursor back", field="after")
    return int(after)


def revocation_feed(
    session: Session,
    *,
    recipient_id: int,
    after: str | None = None,
    limit: int = 100,
    acknowledged: bool | None = None,
    log_key: str | None = None,
) -> RevocationPage:
    """The partner's revocations with ids after the cursor, in id order.

    ``next_cursor`` continues the feed; at its end it repeats the cursor, so polling with it returns
    only what is new. ``acknowledged`` narrows the feed to acknowledged (true) or open (false) ones.
    Given the log's verifier key, the page cites the ledger's latest checkpoint."""
    start = parse_cursor(after)
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000", field="limit")
    query = select(Revocation).where(Revocation.recipient_id == recipient_id, Revocation.id > start)
    if acknowledged is not None:
        query = query.where(
            Revocation.acknowledged_at.is_not(None) if acknowledged else Revocation.acknowledged_at.is_(None)
        )
    rows = list(session.scalars(query.order_by(Revocation.id).limit(limit + 1)))
    has_more = len(rows) > limit
    items = [revocation_out(r) for r in rows[:limit]]
    last = items[-1].id if items else start
    cited = latest_citation(session, log_key=log_key) if log_key is not None else None
    return RevocationPage(
        items=items,
        next_cursor=str(last),
        has_more=has_more,
        checkpoint=CheckpointCitation.model_validate(cited) if cited is not None else None,
    )


def acknowledge(
    session: Session,
    *,
    recipient_id: int,
    revocation_id: int,
    deleted_at: datetime,
    method: str,
    note: str | None = None,
    now: datetime | None = None,
) -> AckOut:
    """Record the partner's attestation that it deleted a revocation's records.

    ``deleted_at`` must carry a time zone and not be in the future (it may precede the revocation: a
    partner may have deleted the records before it was told to). A revocation already acknowledged keeps
    its first attestation: it is returned with ``repeated`` and nothing changes."""
    now = now or utcnow()
    if deleted_at.tzinfo is None:
        raise InvalidInput("deleted_at must carry a time zone", field="deleted_at")
    if deleted_at > now:
        raise InvalidInput("deleted_at must not be in the future", field="deleted_at")
    method = method.strip()
    if not 1 <= len(method) <= 100:
        raise InvalidInput("method must be 1-100 characters", field="method")
    if note is not None and len(note) > 2000:
        raise InvalidInput("note must be at most 2000 characters", field="note")
    revocation = session.scalar(
        select(Revocation)
        .where(Revocation.id == revocation_id, Revocation.recipient_id == recipient_id)
        .with_for_update()
    )
    if revocation is None:
        raise NotFound(f"no revocation {revocation_id}", field="revocation_id")
    if revocation.acknowledged_at is None:
        revocation.acknowledged_at = now
        revocation.deleted_at = deleted_at
        revocation.ack_method = method
        revocation.ack_note = note
        session.flush()
        repeated = False
    else:
        repeated = True
    assert revocation.acknowledged_at is not None and revocation.deleted_at is not None
    return AckOut(
        id=revocation.id,
        acknowledged_at=revocation.acknowledged_at,
        deleted_at=revocation.deleted_at,
        method=revocation.ack_method or "",
        note=revocation.ack_note,
        repeated=repeated,
    )


# --- overdue revocations and the release block ----------------------------------------------------------


def overdue_report(
    session: Session, *, now: datetime | None = None, partner: str | None = None
) -> OverdueReport:
    """Revocations past their deadline without acknowledgement, per partner and release; the partner with
    the oldest missed deadline first."""
    now = now or utcnow()
    query = (
        select(
            Revocation.recipient_id,
            Revocation.release_id,
            func.count(),
            func.sum(Revocation.records),
            func.min(Revocation.deadline_at),
        )
        .where(Revocation.acknowledged_at.is_(None), Revocation.deadline_at < now)
        .group_by(Revocation.recipient_id, Revocation.release_id)
    )
    if partner is not None:
        query = query.where(Revocation.recipient_id == get_partner(session, partner).id)
    by_partner: dict[int, list[OverdueRelease]] = defaultdict(list)
    for recipient_id, release_id, count, records, oldest in session.execute(query):
        by_partner[int(recipient_id)].append(
            OverdueRelease(
                release=release_id, revocations=int(count), records=int(records or 0), oldest_deadline=oldest
            )
        )
    partners = {r.id: r for r in session.scalars(select(Recipient).where(Recipient.id.in_(list(by_partner))))}
    report = []
    for recipient_id, releases in by_partner.items():
        releases.sort(key=lambda r: (r.oldest_deadline, r.release))
        report.append(
            OverduePartner(
                partner=partners[recipient_id].name,
                status=partners[recipient_id].status,
                revocations=sum(r.revocations for r in releases),
                records=sum(r.records for r in releases),
                oldest_deadline=releases[0].oldest_deadline,
                releases=releases,
            )
        )
    report.sort(key=lambda p: (p.oldest_deadline, p.partner))
    return OverdueReport(as_of=now, partners=report)


def overdue_count(session: Session, *, recipient_id: int, now: datetime | None = None) -> int:
    """How many of a partner's revocations are overdue."""
    now = now or utcnow()
    return int(
        session.scalar(
            select(func.count()).where(
                Revocation.recipient_id == recipient_id,
                Revocation.acknowledged_at.is_(None),
                Revocation.deadline_at < now,
            )
        )
        or 0
    )


def check_can_receive(
    session: Session, *, recipient: Recipient, now: datetime | None = None, block_when_overdue: bool = True
) -> None:
    """Refuse (``Conflict`` naming ``recipient``) a new release to a suspended partner, or to one with
    overdue revocations while ``block_when_overdue``."""
    if recipient.status != "active":
        raise Conflict(
            f"recipient {recipient.name!r} is suspended and gets no new release "
            f"(resume it with 'consentry partner resume {recipient.name}')",
            field="recipient",
        )
    if block_when_overdue:
        overdue = overdue_count(session, recipient_id=recipient.id, now=now)
        if overdue:
            raise Conflict(
                f"recipient {recipient.name!r} has {overdue} overdue revocation(s) and gets no new release "
                "until they are acknowledged (see 'consentry partner overdue')",
                field="recipient",
            )
