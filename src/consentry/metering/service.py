"""Organisations, their keys and networks, the access log, and statement queries. No HTTP here.

Functions take a ``session`` and never commit; :class:`AccessLogWriter` is the one exception by design:
it owns a ``Database`` and commits one batch per flush, off the request path.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import ColumnElement, delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from consentry.db import Database, utcnow
from consentry.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from consentry.ids import parse_id
from consentry.metering import damages
from consentry.metering.attribution import (
    BASES,
    KEY_PREFIX,
    UNATTRIBUTED,
    CrawlerCatalog,
    Directory,
    NetworkTable,
    OrgPolicy,
    hash_key,
    parse_network,
)
from consentry.metering.meter import check_posts, check_time
from consentry.metering.models import (
    MODES,
    AccessRecord,
    Organisation,
    OrganisationBotIdentity,
    OrganisationKey,
    OrganisationNetwork,
)
from consentry.metering.schemas import (
    BreachWindow,
    Breakdown,
    HourEvidence,
    KeyOut,
    NetworkOut,
    OrganisationOut,
    OrganisationUpdate,
    Statement,
    TermsIn,
    TopEntry,
    TopOut,
    price_usd,
)
from consentry.metering.webbotauth import IdentityIndex, KeyStore

log = logging.getLogger("consentry.metering")

SUBJECT = re.compile(r"^(?:(?:org|crawler|net|spoofed):\S{1,110}|unknown)$")
"""Subjects of the access log: the kinds attribution returns, and ``unknown`` (not attributed)."""
BASIS = frozenset({"", *BASES})


# --- organisations -------------------------------------------------------------------------------------


NAME_KEY_LENGTH = 600
"""Longest ``name_key`` stored (a 200-character name can grow under NFKC and case folding)."""


def name_key(name: str) -> str:
    """What two organisation names share when they are the same name: the NFKC form of the case-folded
    NFKC form (Unicode's compatibility caseless matching, without its NFD steps), so ``Ünited AI``,
    ``ünited ai``, a decomposed ``U\u0308nited AI`` and ``ÜNITED AI`` are one name, and ``ﬁ`` is ``fi``.
    Stored in ``organisations.name_key``, unique, so the database itself refuses a second one."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 200:
        raise InvalidInput("an organisation name is 1-200 characters", field="name")
    name = name.strip()
    if name.isdigit() or ":" in name:
        raise InvalidInput("an organisation name must not be a number or contain ':'", field="name")
    if len(name_key(name)) > NAME_KEY_LENGTH:
        raise InvalidInput("an organisation name is too long once normalised", field="name")
    return name


def _taken(name: str) -> Conflict:
    return Conflict(f"an organisation named {name!r} exists (names are compared ignoring case)", field="name")


def _flush_named(session: Session, name: str) -> None:
    """Flush an organisation's new name; a name another writer took meanwhile is a conflict."""
    try:
        session.flush()
    except IntegrityError as error:
        raise _taken(name) from error


def _check_terms(mode: str, quota: int | None, price: int | None) -> None:
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}, not {mode!r}", field="mode")
    if quota is not None:
        check_posts(quota, field="quota")
    if price is not None:
        check_posts(price, field="price_micro_usd")
    if mode == "pay" and not price:
        raise InvalidInput("pay mode needs a price per post (price_micro_usd > 0)", field="price_micro_usd")


def _name_taken(session: Session, name: str, *, other_than: int | None = None) -> bool:
    query = select(Organisation.id).where(Organisation.name_key == name_key(name))
    if other_than is not None:
        query = query.where(Organisation.id != other_than)
    return session.scalar(query) is not None


def create_organisation(
    session: Session,
    *,
    name: str,
    mode: str = "meter",
    quota: int | None = None,
    price_micro_usd: int | None = None,
) -> Organisation:
    """Register an organisation that reads content."""
    name = _check_name(name)
    _check_terms(mode, quota, price_micro_usd)
    if _name_taken(session, name):
        raise _taken(name)
    now = utcnow()
    organisation = Organisation(
        name=name,
        name_key=name_key(name),
        mode=mode,
        quota=quota,
        price_micro_usd=price_micro_usd,
        created_at=now,
        updated_at=now,
    )
    session.add(organisation)
    _flush_named(session, name)
    return organisation


def get_organisation(session: Session, *, ref: int | str) -> Organisation:
    """An organisation by id (``12``, ``"12"``, ``"org:12"``) or name (any case); else ``NotFound``."""
    text = str(ref).strip()
    if text.startswith("org:"):
        text = text[4:]
    organisation = None
    if text.isascii() and text.isdigit():
        number = parse_id(text)
        organisation = session.get(Organisation, number) if number is not None else None
    else:
        organisation = session.scalar(select(Organisation).where(Organisation.name_key == name_key(text)))
    if organisation is None:
        raise NotFound(f"no organisation {ref!r}", field="organisation")
    return organisation


def list_organisations(session: Session) -> list[Organisation]:
    """Every organisation, by name."""
    return list(session.scalars(select(Organisation).order_by(Organisation.name)))


def update_organisation(session: Session, *, ref: int | str, changes: OrganisationUpdate) -> Organisation:
    """Change name, mode, quota or price; fields not set in ``changes`` are kept."""
    organisation = get_organisation(session, ref=ref)
    given = changes.model_fields_set
    name = _check_name(changes.name) if "name" in given and changes.name is not None else organisation.name
    mode = changes.mode if "mode" in given and changes.mode is not None else organisation.mode
    quota = changes.quota if "quota" in given else organisation.quota
    price = changes.price_micro_usd if "price_micro_usd" in given else organisation.price_micro_usd
    _check_terms(mode, quota, price)
    if name != organisation.name and _name_taken(session, name, other_than=organisation.id):
        raise _taken(name)
    organisation.name, organisation.name_key, organisation.mode = name, name_key(name), mode
    organisation.quota, organisation.price_micro_usd = quota, price
    organisation.updated_at = utcnow()
    _flush_named(session, name)
    return organisation


def delete_organisation(session: Session, *, ref: int | str) -> None:
    """Delete an organisation with its keys and networks; refused once the access log names it."""
    organisation = get_organisation(session, ref=ref)
    logged = session.scalar(
        select(AccessRecord.id).where(AccessRecord.organisation_id == organisation.id).limit(1)
    )
    if logged is not None:
        raise Conflict(
            f"organisation {organisation.name!r} appears in the access log, which is evidence; "
            "set its mode to 'block' instead",
            field="organisation",
        )
    session.execute(delete(OrganisationKey).where(OrganisationKey.organisation_id == organisation.id))
    session.execute(delete(OrganisationNetwork).where(OrganisationNetwork.organisation_id == organisation.id))
    session.execute(
        delete(OrganisationBotIdentity).where(OrganisationBotIdentity.organisation_id == organisation.id)
    )
    session.delete(organisation)
    session.flush()


def organisation_out(session: Session, organisation: Organisation) -> OrganisationOut:
    """The API shape of an organisation, with its keys and networks."""
    keys = session.scalars(
        select(OrganisationKey)
        .where(OrganisationKey.organisation_id == organisation.id)
        .order_by(OrganisationKey.id)
    )
    networks = session.scalars(
        select(OrganisationNetwork)
        .where(OrganisationNetwork.organisation_id == organisation.id)
        .order_by(OrganisationNetwork.id)
    )
    from consentry.metering.identities import identity_out, list_identities

    return OrganisationOut(
        bot_identities=[
            identity_out(row) for row in list_identities(session, organisation_id=organisation.id)
        ],
        id=organisation.id,
        name=organisation.name,
        mode=organisation.mode,
        quota=organisation.quota,
        price_micro_usd=organisation.price_micro_usd,
        price_usd=price_usd(organisation.price_micro_usd),
        subject=f"org:{organisation.id}",
        created_at=organisation.created_at,
        updated_at=organisation.updated_at,
        keys=[key_out(key) for key in keys],
        networks=[network_out(network) for network in networks],
    )


# --- keys and networks ---------------------------------------------------------------------------------


def key_out(key: OrganisationKey) -> KeyOut:
    """The API shape of a key."""
    return KeyOut(
        id=key.id,
        organisation_id=key.organisation_id,
        hint=key.hint,
        label=key.label,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )


def issue_key(session: Session, *, ref: int | str, label: str = "") -> tuple[OrganisationKey, str]:
    """Issue an API key for an organisation; the key is returned this once and stored hashed."""
    organisation = get_organisation(session, ref=ref)
    if len(label) > 200:
        raise InvalidInput("a key label is at most 200 characters", field="label")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = OrganisationKey(
        organisation_id=organisation.id,
        key_hash=hash_key(key),
        hint=key[:10],
        label=label,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row, key


def resolve_key(session: Session, *, key: str) -> Organisation:
    """The organisation of an API key; ``Unauthenticated`` if unknown or revoked."""
    row = session.scalar(select(OrganisationKey).where(OrganisationKey.key_hash == hash_key(key)))
    if row is None or row.revoked_at is not None:
        raise Unauthenticated("the organisation key is unknown or revoked")
    return get_organisation(session, ref=row.organisation_id)


def revoke_key(session: Session, *, key_id: int) -> OrganisationKey:
    """Revoke a key (idempotent)."""
    row = session.get(OrganisationKey, key_id)
    if row is None:
        raise NotFound(f"no organisation key {key_id}", field="key_id")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row


def network_out(network: OrganisationNetwork) -> NetworkOut:
    """The API shape of a network."""
    return NetworkOut(
        id=network.id,
        organisation_id=network.organisation_id,
        cidr=network.cidr,
        created_at=network.created_at,
    )


def add_network(session: Session, *, ref: int | str, cidr: str) -> OrganisationNetwork:
    """Attribute a network (CIDR) to an organisation; ``InvalidInput`` if malformed."""
    organisation = get_organisation(session, ref=ref)
    network = str(parse_network(cidr))
    existing = session.scalar(select(OrganisationNetwork).where(OrganisationNetwork.cidr == network))
    if existing is not None:
        raise Conflict(f"{network} is already attributed (network {existing.id})", field="cidr")
    row = OrganisationNetwork(organisation_id=organisation.id, cidr=network, created_at=utcnow())
    session.add(row)
    session.flush()
    return row


def remove_network(session: Session, *, network_id: int) -> None:
    """Stop attributing a network."""
    row = session.get(OrganisationNetwork, network_id)
    if row is None:
        raise NotFound(f"no network {network_id}", field="network_id")
    session.delete(row)
    session.flush()


def load_directory(
    session: Session, *, crawlers: CrawlerCatalog | None = None, key_store: KeyStore | None = None
) -> Directory:
    """A snapshot of organisations, active keys, networks and signature agents for attribution.

    The agents' key directories are read from ``key_store`` (refreshed by the caller, off the request
    path); a new store when None.
    """
    from consentry.metering.identities import load_identities

    policies = [
        OrgPolicy(
            id=row.id,
            name=row.name,
            mode=row.mode,  # type: ignore[arg-type]
            quota=row.quota,
            price_micro_usd=row.price_micro_usd,
        )
        for row in session.scalars(select(Organisation))
    ]
    active = select(OrganisationKey.key_hash, OrganisationKey.organisation_id).where(
        OrganisationKey.revoked_at.is_(None)
    )
    keys = {key_hash: organisation_id for key_hash, organisation_id in session.execute(active)}
    networks = NetworkTable(
        (cidr, organisation_id)
        for cidr, organisation_id in session.execute(
            select(OrganisationNetwork.cidr, OrganisationNetwork.organisation_id)
        )
    )
    identities = IdentityIndex(load_identities(session), key_store)
    return Directory(policies, keys=keys, networks=networks, crawlers=crawlers, identities=identities)


# --- the access log ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessEvent:
    """Posts served to a subject at a time (aggregated to the minute when stored)."""

    subject: str
    at: datetime
    posts: int
    organisation_id: int | None = None
    route: str = ""
    client: str = ""
    requests: int = 1
    basis: str = ""
    evidence: str = ""


BucketKey = tuple[str, int | None, datetime, str, str, str, str]


def _minute(at: datetime) -> datetime:
    return check_time(at).replace(second=0, microsecond=0)


def _aggregate(events: Iterable[AccessEvent]) -> dict[BucketKey, list[int]]:
    buckets: dict[BucketKey, list[int]] = {}
    for event in events:
        if not isinstance(event.subject, str) or not SUBJECT.match(event.subject):
            raise InvalidInput(
                f"subject {event.subject!r} is not org:, crawler:, net: or unknown", field="subject"
            )
        posts = check_posts(event.posts)
        requests = check_posts(event.requests, field="requests")
        if event.basis not in BASIS:
            raise InvalidInput(f"basis {event.basis!r} is not one of {', '.join(BASES)}", field="basis")
        key = (
            event.subject,
            event.organisation_id,
            _minute(event.at),
            event.route[:200],
            event.client[:64],
            event.basis,
            event.evidence[:120],
        )
        bucket = buckets.setdefault(key, [0, 0])
        bucket[0] += posts
        bucket[1] += requests
    return buckets


def _insert(session: Session, buckets: dict[BucketKey, list[int]]) -> int:
    rows = [
        {
            "subject": subject,
            "organisation_id": organisation_id,
            "minute": minute,
            "posts": posts,
            "requests": requests,
            "route": route,
            "client": client,
            "basis": basis,
            "evidence": evidence,
        }
        for (subject, organisation_id, minute, route, client, basis, evidence), (
            posts,
            requests,
        ) in buckets.items()
        if posts > 0 or requests > 0
    ]
    if not rows:
        return 0
    wanted = {row["organisation_id"] for row in rows if row["organisation_id"] is not None}
    if wanted:
        known = set(session.scalars(select(Organisation.id).where(Organisation.id.in_(wanted))))
        for row in rows:
            if row["organisation_id"] is not None and row["organisation_id"] not in known:
                row["organisation_id"] = None  # deleted since attribution; the subject still names it
    session.execute(insert(AccessRecord), rows)
    return len(rows)


def append_access_log(session: Session, *, events: Iterable[AccessEvent]) -> int:
    """Append events, merged per (subject, minute, route, client); returns the rows written.

    ``InvalidInput`` for negative or non-integer counts, naive times or malformed subjects: nothing is
    written then.
    """
    return _insert(session, _aggregate(events))


class AccessLogWriter:
    """Buffers metered events in memory and appends them to the access log in batches.

    ``record`` is cheap and thread-safe (a dictionary update); a daemon thread flushes every
    ``interval`` seconds, in one transaction per flush. If the database refuses a batch, the batch stays
    buffered (up to ``max_buckets`` distinct buckets; beyond that the oldest are dropped and counted in
    ``dropped``) and is retried at the next flush.
    """

    def __init__(self, database: Database, *, interval: float = 1.0, max_buckets: int = 1_000_000) -> None:
        self.database = database
        self.interval = interval
        self.max_buckets = max_buckets
        self.failures = 0
        self.dropped = 0
        self.written = 0
        self._buckets: dict[BucketKey, list[int]] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(
        self,
        *,
        subject: str,
        at: datetime,
        posts: int,
        organisation_id: int | None = None,
        route: str = "",
        client: str = "",
        basis: str = "",
        evidence: str = "",
    ) -> None:
        """Buffer one response's posts (validated like ``append_access_log``)."""
        event = AccessEvent(subject, at, posts, organisation_id, route, client, 1, basis, evidence)
        for key, (count, requests) in _aggregate([event]).items():
            with self._lock:
                bucket = self._buckets.get(key)
                if bucket is None:
                    if len(self._buckets) >= self.max_buckets:
                        oldest = next(iter(self._buckets))
                        self.dropped += self._buckets.pop(oldest)[0]
                    bucket = self._buckets[key] = [0, 0]
                bucket[0] += count
                bucket[1] += requests
        if self._thread is None and self.interval > 0:
            self.start()

    def pending(self) -> int:
        """Posts buffered and not yet written."""
        with self._lock:
            return sum(bucket[0] for bucket in self._buckets.values())

    def flush(self) -> int:
        """Write the buffer now; returns the rows written (0 and keeps the buffer on failure)."""
        with self._flush_lock:
            with self._lock:
                batch, self._buckets = self._buckets, {}
            if not batch:
                return 0
            try:
                with self.database.write() as session:
                    written = _insert(session, batch)
            except Exception:
                self.failures += 1
                log.warning("access log flush failed; %d buckets kept for retry", len(batch), exc_info=True)
                with self._lock:
                    for key, (posts, requests) in batch.items():
                        bucket = self._buckets.setdefault(key, [0, 0])
                        bucket[0] += posts
                        bucket[1] += requests
                return 0
            self.written += written
            return written

    def start(self) -> None:
        """Start the background flusher (done on the first ``record``)."""
        with self._flush_lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="consentry-access-log", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def close(self) -> None:
        """Stop the flusher and write what is buffered."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=10)
        self.flush()


# --- statements ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Whose access-log rows a statement covers."""

    label: str
    subject: str
    organisation_id: int | None

    def condition(self) -> ColumnElement[bool]:
        """The access-log filter."""
        if self.organisation_id is not None:
            return AccessRecord.organisation_id == self.organisation_id
        return AccessRecord.subject == self.subject


def resolve_target(session: Session, *, ref: int | str) -> Target:
    """An organisation (id or name) or an unregistered subject (``crawler:...``, ``net:...``,
    ``spoofed:...``: a registered crawler's user agent without its proof, or ``unknown``: requests that
    could not be attributed)."""
    text = str(ref).strip()
    if text.startswith(("crawler:", "net:", "spoofed:")) or text == UNATTRIBUTED.subject:
        seen = session.scalar(select(AccessRecord.id).where(AccessRecord.subject == text).limit(1))
        if seen is None:
            raise NotFound(f"no access by {text!r} is logged", field="organisation")
        return Target(label=text, subject=text, organisation_id=None)
    organisation = get_organisation(session, ref=text)
    return Target(label=organisation.name, subject=f"org:{organisation.id}", organisation_id=organisation.id)


METHOD = (
    "A breach window is a 24-hour period [s, s+24h) starting at a minute s in which posts were served, "
    "holding more than the threshold. Windows are taken greedily: the earliest, then the earliest starting "
    "at or after its end, and so on; they never overlap. Only posts served within the statement period "
    "are counted. Each hour of evidence shows the posts per attribution basis: signed (a Web Bot Auth "
    "signature of the organisation's registered agent), api_key, network (a network registered for it), "
    "user_agent (a crawler user agent naming its operator, which anyone can send)."
)


def statement(
    session: Session,
    *,
    organisation: int | str,
    start: datetime,
    end: datetime,
    terms: damages.Terms | None = None,
    evidence_rows: int = 10,
) -> Statement:
    """The damages statement of an organisation over ``[start, end)``."""
    terms = terms or damages.Terms()
    damages.check_period(start, end)
    target = resolve_target(session, ref=organisation)
    rows = session.execute(
        select(AccessRecord.minute, func.sum(AccessRecord.posts), func.sum(AccessRecord.requests))
        .where(target.condition(), AccessRecord.minute >= start, AccessRecord.minute < end)
        .group_by(AccessRecord.minute)
        .order_by(AccessRecord.minute)
    ).all()
    minutes = np.fromiter((damages.epoch_minute(row[0]) for row in rows), dtype=np.int64, count=len(rows))
    posts = np.fromiter((int(row[1]) for row in rows), dtype=np.int64, count=len(rows))
    requests = np.fromiter((int(row[2]) for row in rows), dtype=np.int64, count=len(rows))
    buckets = damages.prepare(np.zeros_like(minutes), minutes, posts, requests)
    found = damages.find_windows(buckets, threshold=terms.threshold)
    hour_posts, hour_requests = damages.hourly_evidence(buckets, found)
    windows: list[BreachWindow] = []
    for number in range(len(found)):
        window_start = damages.from_minute(int(found.start[number]))
        window_end = window_start + timedelta(days=1)
        amount = damages.amount_cents(int(found.posts[number]), terms)
        hours = [
            HourEvidence(
                start=window_start + timedelta(hours=hour),
                end=window_start + timedelta(hours=hour + 1),
                posts=int(hour_posts[number, hour]),
                requests=int(hour_requests[number, hour]),
            )
            for hour in range(24)
        ]
        scope = (
            target.condition(),
            AccessRecord.minute >= window_start,
            AccessRecord.minute < min(window_end, end),
        )
        hour_bases = _hour_bases(session, scope, window_start)
        for hour_number, evidence in enumerate(hours):
            evidence.bases = hour_bases.get(hour_number, {})
        breakdowns: dict[str, list[Breakdown]] = {}
        for name, column in (
            ("routes", AccessRecord.route),
            ("clients", AccessRecord.client),
            ("bases", AccessRecord.basis),
            ("evidence", AccessRecord.evidence),
        ):
            total = func.sum(AccessRecord.posts)
            breakdowns[name] = [
                Breakdown(name=str(value), posts=int(count))
                for value, count in session.execute(
                    select(column, total)
                    .where(*scope)
                    .group_by(column)
                    .order_by(total.desc())
                    .limit(evidence_rows)
                )
            ]
        windows.append(
            BreachWindow(
                number=number + 1,
                start=window_start,
                end=window_end,
                posts=int(found.posts[number]),
                amount_cents=amount,
                amount_usd=damages.format_usd(amount),
                hours=hours,
                routes=breakdowns["routes"],
                clients=breakdowns["clients"],
                bases=[Breakdown(name=b.name or "unrecorded", posts=b.posts) for b in breakdowns["bases"]],
                evidence=[b for b in breakdowns["evidence"] if b.name],
            )
        )
    total_cents = sum(window.amount_cents for window in windows)
    return Statement(
        organisation=target.label,
        organisation_id=target.organisation_id,
        subject=target.subject,
        period_from=start,
        period_to=end,
        terms=TermsIn(threshold=terms.threshold, rate_cents=terms.rate_cents, rounding=terms.rounding),
        posts_in_period=int(posts.sum()),
        posts_in_windows=sum(window.posts for window in windows),
        windows=windows,
        total_amount_cents=total_cents,
        total_amount_usd=damages.format_usd(total_cents),
        generated_at=utcnow(),
        method=METHOD,
    )


def _hour_bases(
    session: Session, scope: tuple[ColumnElement[bool], ...], start: datetime
) -> dict[int, dict[str, int]]:
    """Posts per attribution basis in each hour of a window (``unrecorded`` for rows without one)."""
    total = func.sum(AccessRecord.posts)
    result: dict[int, dict[str, int]] = {}
    for minute, basis, posts in session.execute(
        select(AccessRecord.minute, AccessRecord.basis, total)
        .where(*scope)
        .group_by(AccessRecord.minute, AccessRecord.basis)
    ):
        hour = int((check_time(minute) - start).total_seconds() // 3600)
        per_hour = result.setdefault(hour, {})
        name = basis or "unrecorded"
        per_hour[name] = per_hour.get(name, 0) + int(posts)
    return result


def top(
    session: Session, *, now: datetime | None = None, limit: int = 20, terms: damages.Terms | None = None
) -> TopOut:
    """Subjects by posts served in the 24 hours up to ``now``, with their projected liability.

    The projected liability is what the last 24 hours would owe as a breach window: the amount for its
    posts when they exceed the threshold, else zero.
    """
    terms = terms or damages.Terms()
    now = check_time(now)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000", field="limit")
    window_start = _minute(now) - timedelta(minutes=damages.WINDOW_MINUTES - 1)
    total = func.sum(AccessRecord.posts)
    rows = session.execute(
        select(AccessRecord.subject, func.max(AccessRecord.organisation_id), total)
        .where(AccessRecord.minute >= window_start, AccessRecord.minute <= now)
        .group_by(AccessRecord.subject)
        .order_by(total.desc(), AccessRecord.subject)
        .limit(limit)
    ).all()
    ids = {row[1] for row in rows if row[1] is not None}
    organisations = (
        {org.id: org for org in session.scalars(select(Organisation).where(Organisation.id.in_(ids)))}
        if ids
        else {}
    )
    entries = []
    for subject, organisation_id, posts_sum in rows:
        posts = int(posts_sum or 0)
        organisation = organisations.get(organisation_id) if organisation_id is not None else None
        projected = damages.amount_cents(posts, terms) if posts > terms.threshold else 0
        entries.append(
            TopEntry(
                subject=subject,
                organisation_id=organisation_id,
                organisation=organisation.name if organisation else subject,
                mode=organisation.mode if organisation else None,
                posts_24h=posts,
                threshold=terms.threshold,
                share_of_threshold=round(posts / terms.threshold, 6) if terms.threshold else 0.0,
                projected_cents=projected,
                projected_usd=damages.format_usd(projected),
            )
        )
    return TopOut(
        as_of=now,
        window_start=window_start,
        terms=TermsIn(threshold=terms.threshold, rate_cents=terms.rate_cents, rounding=terms.rounding),
        entries=entries,
    )
