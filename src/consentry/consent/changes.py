"""Changing settings: requests checked, events appended to the ledger, receipts signed, opt-outs
published (``consent.events``) to the domains that revoke what they released, all in the caller's
transaction."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from consentry.consent import ledger
from consentry.consent.context import ConsentContext
from consentry.consent.events import OptOuts, publish
from consentry.consent.models import ConsentEvent, LedgerHead, PolicyVersion, Subject
from consentry.consent.policies import load_policies
from consentry.consent.policy import Policy, applicable
from consentry.consent.receipts import build_receipt
from consentry.consent.state import decide
from consentry.errors import Conflict, ConsentryError, FieldError, IntegrityFailure, InvalidInput, NotFound
from consentry.links.service import linked_ids_many
from consentry.social.models import Account
from consentry.social.service import get_account

log = logging.getLogger(__name__)


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


class Misrouted(ConsentryError):
    """A request given to the writer of one partition that needs another head: ``partition`` names
    the one of its account, or is ``None`` for a change of linked accounts (which belongs to the
    writer that may take several heads)."""

    def __init__(self, detail: str, *, partition: int | None) -> None:
        super().__init__(detail)
        self.partition = partition


class Found(NamedTuple):
    """What a change needs to know of an account."""

    created_at: datetime
    country: str | None
    status: str
    subject: str | None


_FOUND = (
    select(Account.id, Account.created_at, Account.country, Account.status, Subject.subject_key)
    .outerjoin(Subject, Subject.account_id == Account.id)
    .where(Account.id.in_(bindparam("ids", expanding=True)))
)  # built once: building a statement costs more than running it


@dataclass
class _Batch:
    """One transaction's worth of requests on their way to the ledger."""

    requests: Sequence[ChangeRequest]
    outcome: list[list[dict[str, Any]] | ConsentryError | None]
    targets: dict[int, list[int]]  # request index -> the accounts it changes, the chooser first
    found: dict[int, Found]
    heads: dict[int, ledger.Head]
    at: datetime | None
    policies: list[Policy] | None = None


def _start(session: Session, requests: Sequence[ChangeRequest], ctx: ConsentContext) -> _Batch:
    """Check every request and read the accounts the valid ones change (with their subject keys)."""
    outcome: list[list[dict[str, Any]] | ConsentryError | None] = [None] * len(requests)
    for index, request in enumerate(requests):
        try:
            _check_request(request, ctx)
        except ConsentryError as error:
            outcome[index] = error
    valid = [i for i, r in enumerate(requests) if outcome[i] is None]
    linked = {requests[i].account_id for i in valid if requests[i].scope == "linked"}
    links = linked_ids_many(session, linked) if linked else {}
    targets = {i: [requests[i].account_id, *links.get(requests[i].account_id, [])] for i in valid}
    wanted = sorted({account_id for ids in targets.values() for account_id in ids})
    found = {row[0]: Found(*row[1:]) for row in session.execute(_FOUND, {"ids": wanted})} if wanted else {}
    return _Batch(requests, outcome, targets, found, {}, None)


def _make_keys(session: Session, batch: _Batch, *, partition: int | None = None, partitions: int = 1) -> None:
    """Subject keys for the active accounts the batch changes that have none (with ``partition`` of
    several: for the requesters of changes of scope ``account`` only, in that partition). Every writer
    makes keys before it takes a head, so no transaction holding a head waits for another's new key."""
    if partition is not None and partitions > 1:
        accounts = {
            batch.requests[i].account_id for i in batch.targets if batch.requests[i].scope == "account"
        }
    else:
        accounts = {a for ids in batch.targets.values() for a in ids}
    found = batch.found
    missing = [a for a in accounts if a in found and found[a].subject is None and found[a].status == "active"]
    keys = ledger.subject_keys_for(session, missing, partition=partition, partitions=partitions)
    for account_id, key in keys.items():
        found[account_id] = found[account_id]._replace(subject=key)


def _route(batch: _Batch, partition: int, partitions: int) -> None:
    """The writer of one partition: refuse, as ``Misrouted``, each request that needs another head (an
    account of another partition, or without a subject key; a change of linked accounts)."""
    for index in list(batch.targets):
        request = batch.requests[index]
        own = batch.found.get(request.account_id)
        if own is None or own.status != "active":
            continue  # refused below, whatever the partition
        if request.scope != "account" or own.subject is None:
            batch.outcome[index] = Misrouted(
                "a change of linked accounts takes several heads", partition=None
            )
        elif (home := ledger.partition_of(own.subject, partitions)) != partition:
            batch.outcome[index] = Misrouted(
                f"account {request.account_id} is in partition {home}, not {partition}", partition=home
            )
        else:
            continue
        del batch.targets[index]


def _missing_keys(batch: _Batch) -> bool:
    return any(row.subject is None and row.status == "active" for row in batch.found.values())


@dataclass
class Known:
    """What a writer thread remembers between its batches: the policy versions, with the stamp (how
    many, and the latest) under which it read them. Versions are only ever added, never edited, so
    an unchanged stamp means unchanged policies; the stamp is read with the head, in one query."""

    stamp: tuple[int, int] | None = None
    policies: list[Policy] = field(default_factory=list)


_LOCK_PARTITION = (
    select(
        LedgerHead.seq,
        LedgerHead.hash,
        LedgerHead.recorded_at,
        select(func.count()).select_from(LedgerHead).scalar_subquery(),
        select(func.count()).select_from(PolicyVersion).scalar_subquery(),
        select(func.coalesce(func.max(PolicyVersion.version), 0)).scalar_subquery(),
    )
    .where(LedgerHead.id == bindparam("head_id"))
    .with_for_update(of=LedgerHead)
)  # the writer of a partition: its head, the partition count and the policies' stamp in one query


def _lock_partition(session: Session, batch: _Batch, partition: int, known: Known | None) -> int:
    """Lock one partition's head (when the ledger has it) and return the partition count; with
    ``known``, reuse its policies while their stamp holds."""
    row = session.execute(_LOCK_PARTITION, {"head_id": partition + 1}).one_or_none()
    if row is None:
        return ledger.partition_count(session)
    count = int(row[3])
    batch.heads = {partition: ledger.Head(int(row[0]), str(row[1]), row[2], partition, count)}
    if known is not None:
        stamp = (int(row[4]), int(row[5]))
        if known.stamp != stamp:
            known.policies, known.stamp = load_policies(session), stamp
        batch.policies = known.policies
    return count


def change_settings_many(
    session: Session,
    requests: Sequence[ChangeRequest],
    *,
    ctx: ConsentContext,
    at: datetime | None = None,
    partition: int | None = None,
    known: Known | None = None,
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

    Accounts and subject keys are read (and missing keys made) first; then the heads of the partitions
    the keys fall in are locked, in partition order, and a live write (``at`` not given) takes its time
    while holding them, never earlier than their chains' latest time: seq order and time order agree,
    so the state is the last event (DESIGN.md, "Order of events"). ``at`` is for replaying history
    (tests, tools). With ``partition`` (the group-commit writer of one partition) only that partition's
    head is taken, in the same query that counts the partitions, keys made here fall in that
    partition, and a request that needs another head (an account of another partition, a change of
    linked accounts) gets ``Misrouted`` and writes nothing.
    """
    batch = _start(session, requests, ctx)
    missing = _missing_keys(batch)
    if partition is None:
        partitions = ledger.partition_count(session)
        _make_keys(session, batch)
        keys = {row.subject for row in batch.found.values() if row.subject is not None}
        wanted = {ledger.partition_of(key, partitions) for key in keys} if partitions > 1 else {0}
        batch.heads = ledger.lock_heads(session, wanted, count=partitions)
    else:
        if missing:
            partitions = ledger.partition_count(session)
            _make_keys(session, batch, partition=partition, partitions=partitions)
        partitions = _lock_partition(session, batch, partition, known)
        if not batch.heads and partitions == 1:  # a ledger of one partition, however the writer saw it
            batch.heads = ledger.lock_heads(session, [0], count=1)
        if partitions > 1:
            _route(batch, partition, partitions)
    batch.at = at or ledger.live_time(batch.heads.values())
    return _record(session, batch, ctx=ctx)


def _record(
    session: Session, batch: _Batch, *, ctx: ConsentContext
) -> list[list[dict[str, Any]] | ConsentryError]:
    """Plan every valid request's events, append them in one ledger write, publish the opt-outs (whose
    subscribers revoke released records) and sign the receipts."""
    at = batch.at
    assert at is not None
    policies = batch.policies if batch.policies is not None else load_policies(session)
    plans: list[tuple[int, str, Policy | None, int]] = []  # request index, group, policy, event count
    gpc_seen: set[tuple[int, str]] = set()  # GPC signals already recorded in this batch
    events: list[ledger.NewEvent] = []
    denied: dict[str, list[int]] = defaultdict(list)  # setting -> accounts opting out in this batch
    for index in sorted(batch.targets):
        request = batch.requests[index]
        refused = _refusal(session, batch, request)
        if refused is not None:
            batch.outcome[index] = refused
            continue
        changes = dict(request.changes)
        if request.source == "gpc":
            changes = {
                k: v
                for k, v in changes.items()
                if (request.account_id, k) not in gpc_seen
                and gpc_applies(session, account_id=request.account_id, setting=k, at=at, ctx=ctx)
            }
            gpc_seen.update((request.account_id, k) for k in changes)
        batch.outcome[index] = []
        if changes:
            plans += _plan(batch, index, changes, policies, events, denied, ctx=ctx)
    rows = iter(ledger.append(session, events, heads=batch.heads)) if events else iter(())
    if denied:  # in this transaction: the revocations commit or roll back with the events
        publish(session, OptOuts({ctx.catalog.get(key): ids for key, ids in denied.items()}, at=at))
    for index, group, policy, count in plans:
        title = policy.title if policy else None
        receipts = batch.outcome[index]
        assert isinstance(receipts, list)
        receipts += [
            sign_event(next(rows), ctx=ctx, jurisdiction=group, policy_title=title) for _ in range(count)
        ]
    return [
        item if item is not None else ConsentryError("request was not processed") for item in batch.outcome
    ]


def _refusal(session: Session, batch: _Batch, request: ChangeRequest) -> ConsentryError | None:
    """Why a request's own account cannot change (missing, or not active), if it cannot."""
    row = batch.found.get(request.account_id)
    if row is None:
        return _no_account(session, request.account_id)
    if row.status != "active":
        return Conflict(
            f"account {request.account_id} is {row.status}; its settings cannot change", field="account_id"
        )
    return None


def _plan(
    batch: _Batch,
    index: int,
    changes: dict[str, str],
    policies: list[Policy],
    events: list[ledger.NewEvent],
    denied: dict[str, list[int]],
    *,
    ctx: ConsentContext,
) -> list[tuple[int, str, Policy | None, int]]:
    """The events of one request (one per account it changes and setting), added to ``events``; its
    opt-outs added to ``denied``; returns what its receipts need, per account."""
    request, found, at = batch.requests[index], batch.found, batch.at
    assert at is not None
    accounts = [
        a
        for a in batch.targets[index]
        if a == request.account_id or (a in found and found[a].status == "active")
    ]
    subjects: dict[int, str] = {}
    for account_id in accounts:
        subject = found[account_id].subject
        if subject is None:  # _make_keys gave every active account a key before the heads were taken
            raise IntegrityFailure(f"account {account_id} has no subject key")
        subjects[account_id] = subject
    chosen_by = subjects[request.account_id] if request.scope == "linked" else None
    plans = []
    for account_id in accounts:
        row = found[account_id]
        policy = applicable(policies, created_at=row.created_at, at=at)
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
        plans.append((index, ctx.jurisdictions.group_of(row.country), policy, len(changes)))
    return plans


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


def sign_event(
    row: ledger.EventRecord, *, ctx: ConsentContext, jurisdiction: str, policy_title: str | None
) -> dict[str, Any]:
    """The signed receipt of a stored event."""
    receipt = build_receipt(
        event=row,
        setting=ctx.catalog.get(row.setting),
        jurisdiction=jurisdiction,
        operator_name=ctx.operator_name,
        operator_url=ctx.operator_url,
        policy_title=policy_title,
    )
    return ctx.signer.sign(receipt)
