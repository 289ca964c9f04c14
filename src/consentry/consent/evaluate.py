"""Effective consent, in two implementations that must agree (DESIGN.md, "Effective consent").

``effective_consent`` decides one (account, setting, time); ``evaluate_many`` decides millions of accounts
at once with NumPy over Arrow columns. Order of the rules, for account A, setting S, time t:

1. A is a minor at t (``year(t) - birth_year <= 18``, or no birth year), deactivated or deleted: deny.
2. The latest explicit event for (A, S) recorded at or before t: its value.
3. The default of the policy version that applies to A at t, for A's jurisdiction group.
4. No policy: deny. Any error: deny.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from consentry.consent.catalog import Jurisdictions
from consentry.consent.policy import Policy, applicable, ordered

log = logging.getLogger(__name__)

MINOR_AGE = 18


@dataclass(frozen=True)
class AccountFacts:
    """What evaluation needs to know about an account."""

    account_id: int
    created_at: datetime
    country: str | None
    birth_year: int | None
    status: str
    status_changed_at: datetime | None


@dataclass(frozen=True)
class ExplicitEvent:
    """An explicit choice, as evaluation sees it."""

    setting: str
    value: str
    recorded_at: datetime
    seq: int


@dataclass(frozen=True)
class Decision:
    """An effective value and its basis: minor, inactive, explicit, default, no_policy or error."""

    value: str
    basis: str
    policy_version: int | None = None
    seq: int | None = None

    @property
    def allowed(self) -> bool:
        """Whether the decision is allow."""
        return self.value == "allow"


def is_minor(birth_year: int | None, at: datetime) -> bool:
    """Minor at ``at`` per DESIGN.md; unknown birth year counts as minor (fail closed)."""
    return birth_year is None or at.year - birth_year <= MINOR_AGE


def is_inactive(status: str, status_changed_at: datetime | None, at: datetime) -> bool:
    """Deactivated or deleted at ``at``; a non-active status without a time counts as inactive."""
    if status == "active":
        return False
    return status_changed_at is None or status_changed_at <= at


def latest_event(events: Sequence[ExplicitEvent], setting: str, at: datetime) -> ExplicitEvent | None:
    """The latest explicit event for ``setting`` recorded at or before ``at`` (ties: higher seq)."""
    best: ExplicitEvent | None = None
    for event in events:
        if event.setting != setting or event.recorded_at > at:
            continue
        if best is None or (event.recorded_at, event.seq) > (best.recorded_at, best.seq):
            best = event
    return best


def effective_consent(
    *,
    account: AccountFacts,
    setting: str,
    at: datetime,
    events: Sequence[ExplicitEvent],
    policies: Sequence[Policy],
    jurisdictions: Jurisdictions,
) -> Decision:
    """The effective value of one setting for one account at one time."""
    try:
        policy = applicable(policies, created_at=account.created_at, at=at)
        version = policy.version if policy else None
        if is_minor(account.birth_year, at):
            return Decision("deny", "minor", version)
        if is_inactive(account.status, account.status_changed_at, at):
            return Decision("deny", "inactive", version)
        event = latest_event(events, setting, at)
        if event is not None:
            return Decision(event.value, "explicit", version, event.seq)
        if policy is None:
            return Decision("deny", "no_policy")
        return Decision(policy.default(jurisdictions.group_of(account.country), setting), "default", version)
    except Exception:  # fail closed: any error while evaluating denies
        log.exception("consent evaluation failed for account %s; denying", account.account_id)
        return Decision("deny", "error")


# --- vectorised ---------------------------------------------------------------------------------------

ACCOUNT_SCHEMA = pa.schema(
    [
        ("account_id", pa.int64()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("country", pa.string()),
        ("birth_year", pa.int16()),
        ("status", pa.string()),
        ("status_changed_at", pa.timestamp("us", tz="UTC")),
    ]
)
EVENT_SCHEMA = pa.schema(
    [
        ("account_id", pa.int64()),
        ("setting", pa.string()),
        ("value", pa.string()),
        ("recorded_at", pa.timestamp("us", tz="UTC")),
        ("seq", pa.int64()),
    ]
)

REASON_NONE, REASON_MINOR, REASON_INACTIVE = 0, 1, 2


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)


def to_micros(at: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime."""
    return (at.astimezone(UTC) - EPOCH) // ONE_MICROSECOND


def _ts(column: pa.ChunkedArray | pa.Array, fill: int) -> np.ndarray:
    ints = pc.cast(column, pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return np.asarray(pc.fill_null(ints, fill).to_numpy(zero_copy_only=False), dtype=np.int64)


def _group_index(country: pa.ChunkedArray, jurisdictions: Jurisdictions) -> np.ndarray:
    """Per account, the index of its jurisdiction group in ``jurisdictions.names``."""
    encoded = pc.dictionary_encode(pc.fill_null(pc.utf8_upper(country), "")).combine_chunks()
    lookup = np.array(
        [jurisdictions.names.index(jurisdictions.group_of(c)) for c in encoded.dictionary.to_pylist()] or [0],
        dtype=np.int8,
    )
    return lookup[np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)]


def evaluate_many(
    accounts: pa.Table,
    events: pa.Table,
    *,
    settings: Sequence[str],
    at: datetime,
    policies: Sequence[Policy],
    jurisdictions: Jurisdictions,
) -> pa.Table:
    """Effective consent of every account for every setting at ``at``.

    ``accounts`` has the columns of ``ACCOUNT_SCHEMA`` (account ids unique), ``events`` those of
    ``EVENT_SCHEMA`` (``seq`` orders events recorded at the same instant). Returns ``account_id``,
    ``reason`` (0 none, 1 minor, 2 inactive) and one boolean column per setting (True = allow).
    """
    t = to_micros(at)
    ids = np.asarray(accounts.column("account_id").to_numpy(), dtype=np.int64)
    n = len(ids)
    created = _ts(accounts.column("created_at"), np.iinfo(np.int64).max)
    birth = accounts.column("birth_year")
    birth_np = np.asarray(pc.fill_null(pc.cast(birth, pa.int32()), -100_000).to_numpy(zero_copy_only=False))
    minor = (birth_np == -100_000) | (at.year - birth_np <= MINOR_AGE)
    active = np.asarray(
        pc.fill_null(pc.equal(accounts.column("status"), "active"), False).to_numpy(zero_copy_only=False),
        dtype=bool,
    )
    changed = _ts(accounts.column("status_changed_at"), np.iinfo(np.int64).min)
    inactive = ~active & (changed <= t)
    reason = np.where(minor, REASON_MINOR, np.where(inactive, REASON_INACTIVE, REASON_NONE)).astype(np.int8)
    blocked = reason != REASON_NONE

    groups = _group_index(accounts.column("country"), jurisdictions)
    chosen = np.full(n, -1, dtype=np.int32)
    policy_list = ordered(policies)
    for index, policy in enumerate(policy_list):
        p_at = to_micros(policy.effective_at)
        if p_at > t:
            continue
        mask = np.ones(n, dtype=bool) if policy.applies_to == "all" else created >= p_at
        chosen[mask] = index

    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    ev_account = np.asarray(events.column("account_id").to_numpy(), dtype=np.int64)
    ev_time = _ts(events.column("recorded_at"), np.iinfo(np.int64).max)
    ev_seq = np.asarray(pc.fill_null(events.column("seq"), 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    ev_allow = np.asarray(
        pc.fill_null(pc.equal(events.column("value"), "allow"), False).to_numpy(zero_copy_only=False),
        dtype=bool,
    )
    ev_valid = ev_time <= t
    setting_col = events.column("setting")

    columns: dict[str, pa.Array] = {"account_id": pa.array(ids, pa.int64()), "reason": pa.array(reason)}
    for key in settings:
        defaults = np.zeros(n, dtype=bool)
        if policy_list:
            table = np.array(
                [[p.default(g, key) == "allow" for g in jurisdictions.names] for p in policy_list], dtype=bool
            )
            has_policy = chosen >= 0
            defaults[has_policy] = table[chosen[has_policy], groups[has_policy]]
        value = defaults
        pick = ev_valid & np.asarray(
            pc.fill_null(pc.equal(setting_col, key), False).to_numpy(zero_copy_only=False), dtype=bool
        )
        if pick.any():
            acc, tim, seq, alw = ev_account[pick], ev_time[pick], ev_seq[pick], ev_allow[pick]
            srt = np.lexsort((seq, tim, acc))
            acc, alw = acc[srt], alw[srt]
            last = np.ones(len(acc), dtype=bool)
            last[:-1] = acc[1:] != acc[:-1]
            acc, alw = acc[last], alw[last]
            pos = np.searchsorted(sorted_ids, acc)
            pos_clipped = np.minimum(pos, n - 1) if n else pos
            known = (pos < n) & (sorted_ids[pos_clipped] == acc) if n else np.zeros(len(acc), dtype=bool)
            value = defaults.copy()
            value[order[pos_clipped[known]]] = alw[known]
        columns[key] = pa.array(value & ~blocked)
    return pa.table(columns)
