"""Consent use cases: read and change settings, history, receipts, policies, bulk evaluation."""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.orm import Session

from consentry.config import Settings
from consentry.consent import ledger
from consentry.consent.catalog import Catalog, Jurisdictions, load_catalog, load_jurisdictions
from consentry.consent.evaluate import (
    ACCOUNT_SCHEMA,
    EVENT_SCHEMA,
    Decision,
    ExplicitEvent,
    effective_consent,
    evaluate_many,
)
from consentry.consent.impact import Impact, measure_impact
from consentry.consent.models import ConsentEvent, Notification, PolicyVersion, Subject
from consentry.consent.policy import APPLIES_TO, Policy, applicable, validate_defaults
from consentry.consent.receipts import Signer, build_receipt, load_or_create_signer
from consentry.db import utcnow
from consentry.errors import Conflict, ConsentryError, FieldError, InvalidInput, NotFound
from consentry.partners.revocations import revoke_accounts
from consentry.social.models import Account
from consentry.social.service import facts, get_account
from consentry.transparency.service import LogContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsentContext:
    """What consent use cases need besides the database: catalog, jurisdictions, signer, operator."""

    catalog: Catalog
    jurisdictions: Jurisdictions
    signer: Signer
    operator_name: str
    operator_url: str
    log: LogContext | None = None
    """The transparency log (signs the checkpoints that releases and reports cite)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ConsentContext:
        """Build the context from configuration (creates the signing keys on first use)."""
        return cls(
            catalog=load_catalog(settings.catalog_file),
            jurisdictions=load_jurisdictions(settings.jurisdictions_file),
            signer=load_or_create_signer(settings.home),
            operator_name=settings.operator_name,
            operator_url=settings.operator_url,
            log=LogContext.from_settings(settings),
        )


@dataclass(frozen=True)
class SettingState:
    """The effective state of one setting for one account."""

    key: str
    label: str
    value: str
    basis: str
    explicit: bool
    policy_version: int | None
    seq: int | None


# --- policies ---------------------------------------------------------------------------------------


def policy_of(row: PolicyVersion) -> Policy:
    """The evaluation view of a stored policy version."""
    return Policy(
        version=row.version, effective_at=row.effective_at, applies_to=row.applies_to, defaults=row.defaults
    )


_POLICIES = select(  # statements of the request path are built once (building one costs more than running it)
    PolicyVersion.version,
    PolicyVersion.effective_at,
    PolicyVersion.applies_to,
    PolicyVersion.defaults,
    PolicyVersion.title,
).order_by(PolicyVersion.version)


def load_policies(session: Session) -> list[Policy]:
    """Every policy version (one light query: this runs on every consent change)."""
    rows = session.execute(_POLICIES).all()
    return [Policy(version=v, effective_at=e, applies_to=a, defaults=d, title=t) for v, e, a, d, t in rows]


def list_policies(session: Session) -> list[PolicyVersion]:
    """Every policy version, oldest first."""
    return list(session.scalars(select(PolicyVersion).order_by(PolicyVersion.version)))


DEFAULT_NOTICE = timedelta(days=30)


def candidate_policy(
    session: Session,
    *,
    effective_at: datetime,
    applies_to: str,
    defaults: Any,
    title: str,
    ctx: ConsentContext,
    now: datetime | None = None,
) -> Policy:
    """Validate a would-be policy version and return it (numbered as the next version)."""
    now = now or utcnow()
    if effective_at.tzinfo is None:
        raise InvalidInput("effective_at must carry a time zone", field="effective_at")
    if effective_at <= now:
        raise InvalidInput(
            "effective_at must be in the future; policies never take effect retroactively",
            field="effective_at",
        )
    if applies_to not in APPLIES_TO:
        raise InvalidInput(f"applies_to must be one of {', '.join(APPLIES_TO)}", field="applies_to")
    if not title.strip():
        raise InvalidInput("title must not be empty", field="title")
    clean = validate_defaults(defaults, catalog=ctx.catalog, jurisdictions=ctx.jurisdictions)
    version = (session.scalar(select(func.max(PolicyVersion.version))) or 0) + 1
    return Policy(
        version=version, effective_at=effective_at, applies_to=applies_to, defaults=clean, title=title
    )


def policy_impact(session: Session, *, candidate: Policy, ctx: ConsentContext) -> Impact:
    """How many accounts' effective consent the candidate would change, per setting and jurisdiction."""
    return measure_impact(
        candidate=candidate,
        policies=load_policies(session),
        accounts=accounts_table(session),
        events=events_table(session),
        settings=ctx.catalog.keys,
        jurisdictions=ctx.jurisdictions,
    )


def add_policy(
    session: Session,
    *,
    effective_at: datetime,
    applies_to: str,
    defaults: Any,
    title: str,
    summary: str,
    created_by: str,
    ctx: ConsentContext,
    allow_opt_in: bool = False,
    notice: timedelta = DEFAULT_NOTICE,
    now: datetime | None = None,
) -> tuple[PolicyVersion, Impact]:
    """Add a policy version that takes effect in the future; versions are never edited afterwards.

    A version that changes any default must be announced ``notice`` ahead; one that would silently opt
    existing accounts in is refused unless ``allow_opt_in``. Every account whose effective consent
    changes gets a notification for the platform to deliver.
    """
    now = now or utcnow()
    candidate = candidate_policy(
        session,
        effective_at=effective_at,
        applies_to=applies_to,
        defaults=defaults,
        title=title,
        ctx=ctx,
        now=now,
    )
    impact = policy_impact(session, candidate=candidate, ctx=ctx)
    if impact.changes_defaults and effective_at < now + notice:
        raise InvalidInput(
            f"this version changes defaults, so it must be announced at least {notice.days} days ahead "
            f"(effective_at on or after {(now + notice).isoformat()})",
            field="effective_at",
        )
    if impact.silent_opt_ins and not allow_opt_in:
        raise Conflict(
            f"this version would silently opt {impact.silent_opt_ins} existing accounts in; apply it to "
            "new accounts only, or pass allow_opt_in to do it knowingly",
            field="applies_to",
        )
    row = PolicyVersion(
        version=candidate.version,
        effective_at=effective_at,
        applies_to=applies_to,
        defaults=dict(candidate.defaults),
        title=title.strip(),
        summary=summary.strip(),
        created_at=now,
        created_by=created_by,
    )
    session.add(row)
    session.flush()
    notices = [
        {
            "account_id": account_id,
            "kind": "policy_change",
            "payload": {
                "policy_version": row.version,
                "effective_at": effective_at.isoformat(),
                "title": row.title,
            },
            "created_at": now,
        }
        for account_id in impact.changed_account_ids
    ]
    for start in range(0, len(notices), 10_000):
        session.execute(insert(Notification), notices[start : start + 10_000])
    return row, impact


def notifications(session: Session, *, account_id: int, limit: int = 100) -> list[Notification]:
    """An account's notifications, newest first."""
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000", field="limit")
    query = select(Notification).where(Notification.account_id == account_id)
    return list(session.scalars(query.order_by(Notification.id.desc()).limit(limit)))


def get_policy(session: Session, version: int) -> PolicyVersion:
    """One policy version, or ``NotFound``."""
    row = session.get(PolicyVersion, version)
    if row is None:
        raise NotFound(f"policy version {version} does not exist", field="version")
    return row


# --- reading and changing settings ------------------------------------------------------------------


_EXPLICIT_EVENTS = (  # an account's events, through its subject key, in one query
    select(ConsentEvent.setting, ConsentEvent.value, ConsentEvent.recorded_at, ConsentEvent.seq)
    .join(Subject, Subject.subject_key == ConsentEvent.subject_key)
    .where(Subject.account_id == bindparam("account_id"))
)


def _explicit_events(session: Session, account_id: int) -> list[ExplicitEvent]:
    rows = session.execute(_EXPLICIT_EVENTS, {"account_id": account_id}).all()
    return [ExplicitEvent(setting=s, value=v, recorded_at=r, seq=q) for s, v, r, q in rows]


def decide(
    session: Session, *, account: Account, setting: str, at: datetime, ctx: ConsentContext
) -> Decision:
    """The effective consent of one account for one setting at ``at`` (the single-check implementation)."""
    ctx.catalog.get(setting)
    return effective_consent(
        account=facts(account),
        setting=setting,
        at=at,
        events=_explicit_events(session, account.id),
        policies=load_policies(session),
        jurisdictions=ctx.jurisdictions,
    )


def current_time(session: Session) -> datetime:
    """The time at which "now" is read: the clock, but never before the last event in the ledger."""
    return ledger.current_time(session)


def settings_view(
    session: Session, *, account_id: int, ctx: ConsentContext, at: datetime | None = None
) -> list[SettingState]:
    """Every catalog setting of an account with its effective value and its basis (now, by default)."""
    at = at or current_time(session)
    account = get_account(session, account_id)
    events = _explicit_events(session, account_id)
    policies = load_policies(session)
    states = []
    for setting in ctx.catalog.settings:
        decision = effective_consent(
            account=facts(account),
            setting=setting.key,
            at=at,
            events=events,
            policies=policies,
            jurisdictions=ctx.jurisdictions,
        )
        states.append(
            SettingState(
                key=setting.key,
                label=setting.label,
                value=decision.value,
                basis=decision.basis,
                explicit=decision.basis == "explicit",
                policy_version=decision.policy_version,
                seq=decision.seq,
            )
        )
    return states


SCOPES = ("account", "linked")


@dataclass(frozen=True)
class ChangeRequest:
    """One account holder's explicit choices, as submitted by a client.

    ``scope`` ``linked`` applies them to the account and to every account it has a confirmed link with:
    one event per account and setting, each naming the account that chose (``chosen_by``), all or
    nothing.
    """

    account_id: int
    changes: Mapping[str, str]
    client: str
    source: str = "user"
    scope: str = "account"


def _check_request(request: ChangeRequest, ctx: ConsentContext) -> None:
    """Every problem of a request at once (unknown settings, values other than allow or deny)."""
    if not request.changes:
        raise InvalidInput("name at least one setting", field="settings")
    problems: list[FieldError] = []
    for key, value in request.changes.items():
        field = f"settings.{key}"
        try:
            ctx.catalog.get(key, field=field)
        except InvalidInput as error:
            problems.append(FieldError(field, error.detail))
        if value not in ledger.VALUES:
            problems.append(FieldError(field, f"value must be allow or deny, not {value!r}"))
    if request.scope not in SCOPES:
        problems.append(FieldError("scope", f"scope must be one of {', '.join(SCOPES)}"))
    elif request.scope == "linked" and request.source != "user":
        problems.append(FieldError("scope", "only the account holder's own choice can cover linked accounts"))
    if problems:
        raise InvalidInput.of(problems)


def change_settings_many(
    session: Session, requests: Sequence[ChangeRequest], *, ctx: ConsentContext, at: datetime | None = None
) -> list[list[dict[str, Any]] | ConsentryError]:
    """Record many requests' choices in one transaction (the caller commits once).

    Each request is all or nothing: an invalid one gets its error in the result and writes nothing,
    without failing the others. Accounts, subject keys and policies are read once for the whole batch and
    every event is appended in one ledger write.

    A request of scope ``linked`` covers its account and every active account it has a confirmed link
    with (a deactivated one is left as it is: it is denied anyway). Each account gets its own event per
    setting, under the policy version and jurisdiction that apply to it, naming the chooser's subject
    key as ``chosen_by``; the request's receipts are the chooser's first, then each linked account's in
    id order. Rules that deny (a minor, an inactive account) still decide effective consent per account.

    The ledger head is locked first and a live write (``at`` not given) takes its time while holding
    it, never earlier than the chain's latest time: seq order and time order agree, so the state is the
    last event (DESIGN.md, "Order of events"). ``at`` is for replaying history (tests, tools). In a
    ledger of several partitions the subject keys are read (and created) first, then the heads of the
    partitions they fall in are locked, in partition order, and the time is taken under them.
    """
    from consentry.links.service import linked_ids_many

    partitions = ledger.partition_count(session)
    heads = {0: ledger.lock_head(session)} if partitions == 1 else {}
    at = at or (ledger.live_time(heads.values()) if heads else None)
    outcome: list[list[dict[str, Any]] | ConsentryError | None] = [None] * len(requests)
    for index, request in enumerate(requests):
        try:
            _check_request(request, ctx)
        except ConsentryError as error:
            outcome[index] = error
    valid = [i for i, r in enumerate(requests) if outcome[i] is None]
    links = linked_ids_many(session, {requests[i].account_id for i in valid if requests[i].scope == "linked"})
    targets = {  # request index -> the accounts it changes, the chooser first
        i: [requests[i].account_id, *links.get(requests[i].account_id, [])] for i in valid
    }
    wanted = sorted({account_id for ids in targets.values() for account_id in ids})
    found = (
        {
            row[0]: row[1:]
            for row in session.execute(
                select(Account.id, Account.created_at, Account.country, Account.status, Subject.subject_key)
                .outerjoin(Subject, Subject.account_id == Account.id)
                .where(Account.id.in_(wanted))
            )
        }
        if wanted
        else {}
    )
    if partitions > 1:  # subject keys first: they name the partitions whose heads this batch takes
        for account_id, (created_at, country, status, subject) in list(found.items()):
            if subject is None and status == "active":
                subject = ledger.subject_key_for(session, account_id)
                found[account_id] = (created_at, country, status, subject)
        heads = ledger.lock_heads(
            session,
            {ledger.partition_of(str(row[3]), partitions) for row in found.values() if row[3] is not None},
            count=partitions,
        )
        at = at or ledger.live_time(heads.values())
    assert at is not None
    policies = load_policies(session)
    plans: list[tuple[int, str, Policy | None, int]] = []  # request index, group, policy, event count
    gpc_seen: set[tuple[int, str]] = set()  # GPC signals already recorded in this batch
    events: list[ledger.NewEvent] = []
    denied: dict[str, list[int]] = defaultdict(list)  # setting -> accounts opting out in this batch
    for index, request in enumerate(requests):
        if outcome[index] is not None:
            continue
        row = found.get(request.account_id)
        if row is None:
            outcome[index] = _no_account(session, request.account_id)
            continue
        status = row[2]
        if status != "active":
            outcome[index] = Conflict(
                f"account {request.account_id} is {status}; its settings cannot change", field="account_id"
            )
            continue
        accounts = [
            a for a in targets[index] if a == request.account_id or (a in found and found[a][2] == "active")
        ]
        changes = dict(request.changes)
        if request.source == "gpc":
            changes = {
                k: v
                for k, v in changes.items()
                if (request.account_id, k) not in gpc_seen
                and gpc_applies(session, account_id=request.account_id, setting=k, at=at, ctx=ctx)
            }
            gpc_seen.update((request.account_id, k) for k in changes)
            if not changes:
                outcome[index] = []
                continue
        subjects: dict[int, str] = {}
        for account_id in accounts:
            created_at, country, status, subject = found[account_id]
            if subject is None:
                subject = ledger.subject_key_for(session, account_id)
                found[account_id] = (created_at, country, status, subject)
            subjects[account_id] = str(subject)
        chosen_by = subjects[request.account_id] if request.scope == "linked" else None
        for account_id in accounts:
            created_at, country, _, _ = found[account_id]
            policy = applicable(policies, created_at=created_at, at=at)
            for key, value in changes.items():
                if value == "deny":
                    denied[key].append(account_id)
                events.append(
                    ledger.NewEvent(
                        subject_key=subjects[account_id],
                        setting=key,
                        value=value,
                        source=request.source,
                        policy_version=policy.version if policy else None,
                        recorded_at=at,
                        client=request.client,
                        chosen_by=chosen_by,
                    )
                )
            plans.append((index, ctx.jurisdictions.group_of(country), policy, len(changes)))
        outcome[index] = []
    rows = iter(ledger.append(session, events, heads=heads)) if events else iter(())
    for key, accounts in denied.items():
        revoke_accounts(session, account_ids=accounts, reason="opt_out", setting=ctx.catalog.get(key), at=at)
    for index, group, policy, count in plans:
        title = policy.title if policy else None
        receipts = outcome[index]
        assert isinstance(receipts, list)
        receipts += [_sign(next(rows), ctx=ctx, jurisdiction=group, policy_title=title) for _ in range(count)]
    return [item if item is not None else ConsentryError("request was not processed") for item in outcome]


def gpc_settings(ctx: ConsentContext) -> list[str]:
    """The settings a Global Privacy Control signal opts out of: every third-party setting."""
    return [s.key for s in ctx.catalog.settings if s.recipient == "third_party"]


def gpc_request(account_id: int, *, ctx: ConsentContext, client: str = "web") -> ChangeRequest:
    """The change a ``Sec-GPC: 1`` request asks for; applied only where ``gpc_applies``."""
    return ChangeRequest(account_id, dict.fromkeys(gpc_settings(ctx), "deny"), client, source="gpc")


def gpc_applies(
    session: Session, *, account_id: int, setting: str, at: datetime, ctx: ConsentContext
) -> bool:
    """Whether a GPC signal must record a deny for ``setting`` now (DESIGN.md, Global Privacy Control).

    Only when the effective value is allow, and the latest event for the setting is neither a GPC event
    nor an explicit choice made after an earlier GPC event (such a choice stands).
    """
    account = get_account(session, account_id)
    if not decide(session, account=account, setting=setting, at=at, ctx=ctx).allowed:
        return False
    key = ledger.subject_key_for(session, account_id, create=False)
    if key is None:
        return True
    sources = session.scalars(
        select(ConsentEvent.source)
        .where(
            ConsentEvent.subject_key == key, ConsentEvent.setting == setting, ConsentEvent.recorded_at <= at
        )
        .order_by(ConsentEvent.recorded_at, ConsentEvent.seq)
    ).all()
    return not sources or "gpc" not in sources


def _no_account(session: Session, account_id: int) -> NotFound:
    """The error for a change to an account the database does not have; when the ledger knows the account
    (events imported from a lake before imports created accounts), it says what to run."""
    message = f"account {account_id} does not exist"
    if ledger.subject_key_for(session, account_id, create=False) is not None:
        message += (
            "; the ledger holds its consent events, imported from a lake without the account: create the "
            "lake's accounts with 'consentry ledger import LAKE --accounts-only', then try again"
        )
    return NotFound(message, field="account_id")


def change_settings(
    session: Session,
    *,
    account_id: int,
    changes: Mapping[str, str],
    client: str,
    ctx: ConsentContext,
    source: str = "user",
    at: datetime | None = None,
    scope: str = "account",
) -> list[dict[str, Any]]:
    """Record explicit choices (all or none) and return one signed receipt per change (per account and
    change for scope ``linked``)."""
    [result] = change_settings_many(
        session, [ChangeRequest(account_id, dict(changes), client, source, scope)], ctx=ctx, at=at
    )
    if isinstance(result, ConsentryError):
        raise result
    return result


def _sign(
    row: ConsentEvent, *, ctx: ConsentContext, jurisdiction: str, policy_title: str | None
) -> dict[str, Any]:
    receipt = build_receipt(
        event=row,
        setting=ctx.catalog.get(row.setting),
        jurisdiction=jurisdiction,
        operator_name=ctx.operator_name,
        operator_url=ctx.operator_url,
        policy_title=policy_title,
    )
    return ctx.signer.sign(receipt)


def history(
    session: Session, *, account_id: int, limit: int = 100, before_seq: int | None = None
) -> list[ConsentEvent]:
    """An account's consent events, newest first."""
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000", field="limit")
    get_account(session, account_id)
    key = ledger.subject_key_for(session, account_id, create=False)
    if key is None:
        return []
    query = select(ConsentEvent).where(ConsentEvent.subject_key == key)
    if before_seq is not None:
        query = query.where(ConsentEvent.seq < before_seq)
    return list(session.scalars(query.order_by(ConsentEvent.seq.desc()).limit(limit)))


def receipt_for(session: Session, *, account_id: int, seq: int, ctx: ConsentContext) -> dict[str, Any]:
    """The signed receipt of one of the account's own events (regenerated; signatures are deterministic)."""
    account = get_account(session, account_id)
    key = ledger.subject_key_for(session, account_id, create=False)
    row = session.get(ConsentEvent, seq)
    if row is None or key is None or row.subject_key != key:
        raise NotFound(f"no consent event {seq} of this account", field="seq")
    title = get_policy(session, row.policy_version).title if row.policy_version is not None else None
    return _sign(row, ctx=ctx, jurisdiction=ctx.jurisdictions.group_of(account.country), policy_title=title)


# --- bulk evaluation --------------------------------------------------------------------------------


def rows_to_table(rows: Sequence[Sequence[Any]], schema: pa.Schema) -> pa.Table:
    """Result rows (in schema order) as an Arrow table."""
    columns = [pa.array([row[i] for row in rows], type=f.type) for i, f in enumerate(schema)]
    return pa.table(columns, schema=schema)


def account_columns() -> tuple[Any, ...]:
    """The account columns of ``ACCOUNT_SCHEMA``, in its order."""
    return (
        Account.id,
        Account.created_at,
        Account.country,
        Account.birth_year,
        Account.status,
        Account.status_changed_at,
    )


def accounts_table(session: Session) -> pa.Table:
    """Every account, in ``ACCOUNT_SCHEMA``."""
    rows = session.execute(select(*account_columns())).all()
    return rows_to_table(rows, ACCOUNT_SCHEMA)


_ACCOUNT_CSV = pacsv.ConvertOptions(
    column_types={
        "account_id": pa.int64(),
        "created_at": pa.timestamp("us"),
        "country": pa.string(),
        "birth_year": pa.int16(),
        "status": pa.string(),
        "status_changed_at": pa.timestamp("us"),
    },
    null_values=[""],  # never "NA": that is Namibia
    strings_can_be_null=True,
    quoted_strings_can_be_null=False,
)


def load_accounts(session: Session, *, above: int = 0) -> pa.Table:
    """Every account with an id above ``above``, in ``ACCOUNT_SCHEMA``, ordered by id.

    Millions of rows must not become Python objects one by one: SQLite concatenates them into one CSV
    text and PostgreSQL streams ``COPY``; Arrow parses the CSV (the columns are numbers, timestamps,
    country codes and statuses: nothing to quote).
    """
    raw: Any = session.connection().connection.dbapi_connection
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        cursor = raw.cursor()
        try:
            cursor.execute(
                "SELECT group_concat(id || ',' || created_at || ',' || coalesce(country, '') || ',' || "
                "coalesce(birth_year, '') || ',' || status || ',' || coalesce(status_changed_at, ''), "
                "char(10)) FROM (SELECT * FROM accounts WHERE id > ? ORDER BY id)",
                (int(above),),
            )
            data = (cursor.fetchone()[0] or "").encode()
        finally:
            cursor.close()
    elif dialect == "postgresql":
        query = (
            "COPY (SELECT id, created_at, country, birth_year, status, status_changed_at FROM accounts "
            f"WHERE id > {int(above)} ORDER BY id) TO STDOUT WITH (FORMAT csv)"
        )
        buffer = io.BytesIO()
        with raw.cursor() as cursor, cursor.copy(query) as copy:
            for block in copy:
                buffer.write(block)
        data = buffer.getvalue()
    else:  # any other database: row by row
        rows = session.execute(select(*account_columns()).where(Account.id > above).order_by(Account.id))
        return rows_to_table(rows.all(), ACCOUNT_SCHEMA)
    if not data:
        return ACCOUNT_SCHEMA.empty_table()
    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=list(ACCOUNT_SCHEMA.names)),
        convert_options=_ACCOUNT_CSV,
    )
    for name in ("created_at", "status_changed_at"):
        utc = pc.cast(table[name], pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))
        table = table.set_column(table.schema.get_field_index(name), name, utc)
    return table.cast(ACCOUNT_SCHEMA)


def events_table(session: Session, *, until: datetime | None = None) -> pa.Table:
    """Every explicit event of a still-mapped account, in ``EVENT_SCHEMA``.

    Read through the database driver and converted column-wise: this feeds bulk evaluation over
    millions of events.
    """
    sql = (
        "SELECT s.account_id, e.setting, e.value, e.recorded_at, e.seq FROM consent_events e "
        "JOIN consent_subjects s ON s.subject_key = e.subject_key"
    )
    params: tuple[Any, ...] = ()
    dialect = session.get_bind().dialect.name
    if until is not None:
        naive = until.astimezone(UTC).replace(tzinfo=None)
        if dialect == "sqlite":
            sql += " WHERE e.recorded_at <= ?"
            params = (naive.strftime("%Y-%m-%d %H:%M:%S.%f"),)
        else:
            sql += " WHERE e.recorded_at <= %s"
            params = (naive,)
    raw: Any = session.connection().connection.dbapi_connection
    cursor = raw.cursor()
    try:
        cursor.execute(sql + " ORDER BY e.seq", params)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    if not rows:
        return EVENT_SCHEMA.empty_table()
    ids, settings, values, times, seqs = (list(column) for column in zip(*rows, strict=True))
    if isinstance(times[0], str):
        when = pc.assume_timezone(pa.array(times).cast(pa.timestamp("us")), "UTC")
    else:
        when = pa.array(
            [t if t.tzinfo else t.replace(tzinfo=UTC) for t in times], pa.timestamp("us", tz="UTC")
        )
    return pa.table(
        [pa.array(ids, pa.int64()), pa.array(settings), pa.array(values), when, pa.array(seqs, pa.int64())],
        schema=EVENT_SCHEMA,
    )


def read_accounts(
    session: Session,
    *,
    account_ids: Sequence[int],
    settings: Sequence[str],
    until: datetime | None = None,
) -> tuple[pa.Table, pa.Table]:
    """The rows (``ACCOUNT_SCHEMA``) and explicit events (``EVENT_SCHEMA``) for ``settings``, recorded
    at or before ``until`` (any time without), of the given accounts, read 5,000 ids at a time."""
    ids = sorted({int(a) for a in account_ids})
    accounts: list[Any] = []
    events: list[Any] = []
    for start in range(0, len(ids), 5_000):
        chunk = ids[start : start + 5_000]
        accounts += session.execute(select(*account_columns()).where(Account.id.in_(chunk))).all()
        query = (
            select(
                Subject.account_id,
                ConsentEvent.setting,
                ConsentEvent.value,
                ConsentEvent.recorded_at,
                ConsentEvent.seq,
            )
            .join(Subject, Subject.subject_key == ConsentEvent.subject_key)
            .where(Subject.account_id.in_(chunk), ConsentEvent.setting.in_(list(settings)))
        )
        if until is not None:
            query = query.where(ConsentEvent.recorded_at <= until)
        events += session.execute(query).all()
    return rows_to_table(accounts, ACCOUNT_SCHEMA), rows_to_table(events, EVENT_SCHEMA)


def evaluate_accounts(
    session: Session,
    *,
    account_ids: Sequence[int],
    settings: Sequence[str],
    at: datetime,
    ctx: ConsentContext,
) -> pa.Table:
    """Effective consent of the given accounts only: their rows and events are read, then evaluated
    vectorised. Unknown ids are simply absent from the result (callers treat absence as deny)."""
    accounts, events = read_accounts(session, account_ids=account_ids, settings=settings, until=at)
    return evaluate_many(
        accounts,
        events,
        settings=list(settings),
        at=at,
        policies=load_policies(session),
        jurisdictions=ctx.jurisdictions,
    )


def allowed_accounts(
    session: Session,
    *,
    account_ids: Sequence[int],
    setting: str,
    ctx: ConsentContext,
    at: datetime | None = None,
) -> set[int]:
    """The ids among ``account_ids`` whose effective consent for ``setting`` is allow; on error, none."""
    ctx.catalog.get(setting)
    try:
        table = evaluate_accounts(
            session, account_ids=account_ids, settings=[setting], at=at or utcnow(), ctx=ctx
        )
    except Exception:  # fail closed
        log.exception("consent evaluation failed for %d accounts; allowing none", len(account_ids))
        return set()
    return set(table.filter(table[setting])["account_id"].to_pylist())


def evaluate_all(
    session: Session, *, at: datetime, ctx: ConsentContext, settings: Sequence[str] | None = None
) -> pa.Table:
    """Effective consent of every account in the database (vectorised)."""
    return evaluate_many(
        accounts_table(session),
        events_table(session, until=at),
        settings=list(settings or ctx.catalog.keys),
        at=at,
        policies=load_policies(session),
        jurisdictions=ctx.jurisdictions,
    )
