"""Effective consent, in two readings of one rule table (DESIGN.md, "Effective consent").

``effective_consent`` decides one (account, setting, time); ``evaluate_many`` decides millions of accounts
at once with NumPy over Arrow columns. Both walk ``consentry.consent.rules.CONSENT_STEPS`` (minor,
inactive, explicit event, policy default, no policy: the first that applies decides); the account
conditions are the table's expressions, read in Python and with NumPy. Any error: deny.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from consentry.consent.catalog import Jurisdictions
from consentry.consent.policy import Policy, applicable, ordered
from consentry.consent.rules import (
    ACCOUNT_STEPS,
    CONSENT_STEPS,
    EPOCH,
    INACTIVE,
    MINOR,
    MINOR_AGE,
    ONE_MICROSECOND,
    Expr,
    Values,
    arrays_of,
    columns_of,
    holds,
    holds_arrays,
    to_micros,
)

log = logging.getLogger(__name__)

__all__ = ["EPOCH", "MINOR_AGE", "ONE_MICROSECOND", "to_micros"]  # re-exported for older callers


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


def account_row(account: AccountFacts) -> dict[tuple[str, str], object]:
    """The account as the rule table's expressions read it."""
    return {
        ("account", "created_at"): account.created_at,
        ("account", "country"): account.country,
        ("account", "birth_year"): account.birth_year,
        ("account", "status"): account.status,
        ("account", "status_changed_at"): account.status_changed_at,
    }


def is_minor(birth_year: int | None, at: datetime) -> bool:
    """Minor at ``at`` per DESIGN.md; unknown birth year counts as minor (fail closed)."""
    return holds(MINOR, {("account", "birth_year"): birth_year}, now=at)


def is_inactive(status: str, status_changed_at: datetime | None, at: datetime) -> bool:
    """Deactivated or deleted at ``at``; a non-active status without a time counts as inactive."""
    row = {("account", "status"): status, ("account", "status_changed_at"): status_changed_at}
    return holds(INACTIVE, row, now=at)


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
        row = account_row(account)
        for step in CONSENT_STEPS:
            if step.when is not None and not holds(step.when, row, now=at):
                continue
            if step.source == "explicit":
                event = latest_event(events, setting, at)
                if event is not None:
                    return Decision(event.value, step.basis, version, event.seq)
            elif step.source == "default":
                if policy is not None:
                    group = jurisdictions.group_of(account.country)
                    return Decision(policy.default(group, setting), step.basis, version)
            else:
                return Decision("deny", step.basis, version if step.when is not None else None)
        return Decision("deny", "no_policy")  # the table ends with an unconditional deny
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

REASON_NONE = 0
REASON_MINOR, REASON_INACTIVE = (
    next(code for code, step in enumerate(ACCOUNT_STEPS, 1) if step.basis == basis)
    for basis in ("minor", "inactive")
)
"""``evaluate_many``'s reasons: the position plus one of the account step that denied (0: none)."""


def account_arrays(accounts: pa.Table, needed: Iterable[Expr]) -> dict[tuple[str, str], Values]:
    """The account columns the ``needed`` expressions read, as the rule table's NumPy reading takes
    them (``rules.arrays_of``)."""
    names = sorted({name for expr in needed for table, name in columns_of(expr) if table == "account"})
    return arrays_of(accounts, "account", names)


def _ts(column: pa.ChunkedArray | pa.Array, fill: int) -> np.ndarray:
    ints = pc.cast(column, pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return np.asarray(pc.fill_null(ints, fill).to_numpy(zero_copy_only=False), dtype=np.int64)


def group_index(country: pa.ChunkedArray, jurisdictions: Jurisdictions) -> np.ndarray:
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
    arrays = account_arrays(accounts, [s.when for s in ACCOUNT_STEPS if s.when is not None])
    reason = np.full(n, REASON_NONE, dtype=np.int8)
    for code in range(len(ACCOUNT_STEPS), 0, -1):  # the first step that holds wins
        when = ACCOUNT_STEPS[code - 1].when
        assert when is not None
        reason[holds_arrays(when, arrays, size=n, now=at)] = code
    blocked = reason != REASON_NONE

    groups = group_index(accounts.column("country"), jurisdictions)
    # row 0 of the defaults table stands for "no policy applies" (deny); policy i is row i + 1
    chosen = np.zeros(n, dtype=np.int32)
    policy_list = ordered(policies)
    for index, policy in enumerate(policy_list):
        p_at = to_micros(policy.effective_at)
        if p_at > t:
            continue
        if policy.applies_to == "all":
            chosen[:] = index + 1
        else:
            chosen[created >= p_at] = index + 1
    table = np.zeros((len(policy_list) + 1, len(jurisdictions.names), len(settings)), dtype=bool)
    for index, policy in enumerate(policy_list):
        for g, group in enumerate(jurisdictions.names):
            table[index + 1, g] = [policy.default(group, key) == "allow" for key in settings]
    value = table[chosen, groups]  # (accounts, settings): the defaults
    explicit_set, explicit_allow = _latest_explicit(events, ids, settings, t)
    explicit_set = explicit_set.reshape(n, len(settings))
    explicit_allow = explicit_allow.reshape(n, len(settings))
    value = np.where(explicit_set, explicit_allow, value) & ~blocked[:, None]
    columns: dict[str, pa.Array] = {"account_id": pa.array(ids, pa.int64()), "reason": pa.array(reason)}
    for k, key in enumerate(settings):
        columns[key] = pa.array(np.ascontiguousarray(value[:, k]))
    return pa.table(columns)


def _account_index(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """For each id in ``wanted``, its position in ``ids`` (-1 when absent)."""
    n = len(ids)
    if n == 0 or len(wanted) == 0:
        return np.full(len(wanted), -1, dtype=np.int64)
    low, high = int(ids.min()), int(ids.max())
    if high - low < 8 * n + 1024:  # dense ids: one gather through a lookup array
        lookup = np.full(high - low + 1, -1, dtype=np.int64)
        lookup[ids - low] = np.arange(n, dtype=np.int64)
        inside = (wanted >= low) & (wanted <= high)
        result = np.full(len(wanted), -1, dtype=np.int64)
        result[inside] = lookup[wanted[inside] - low]
        return result
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    pos = np.minimum(np.searchsorted(sorted_ids, wanted), n - 1)
    return np.where(sorted_ids[pos] == wanted, order[pos], -1)


def _latest_explicit(
    events: pa.Table, ids: np.ndarray, settings: Sequence[str], t: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per (account, setting) pair, flattened as ``index * len(settings) + k``: whether an explicit event
    at or before ``t`` exists, and whether the latest one (by time, then seq) allows."""
    n_pairs = len(ids) * len(settings)
    present = np.zeros(n_pairs, dtype=bool)
    allow = np.zeros(n_pairs, dtype=bool)
    if events.num_rows == 0 or n_pairs == 0:
        return present, allow
    code_column = pc.index_in(events.column("setting"), value_set=pa.array(list(settings), pa.string()))
    code = np.asarray(pc.fill_null(code_column, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
    when = _ts(events.column("recorded_at"), np.iinfo(np.int64).max)
    owner = _account_index(
        np.asarray(ids, dtype=np.int64), np.asarray(events.column("account_id").to_numpy(), dtype=np.int64)
    )
    keep = (code >= 0) & (owner >= 0) & (when <= t)
    pair = owner[keep] * len(settings) + code[keep]
    when = when[keep]
    seq = np.asarray(pc.fill_null(events.column("seq"), 0).to_numpy(zero_copy_only=False), dtype=np.int64)[
        keep
    ]
    says_allow = np.asarray(
        pc.fill_null(pc.equal(events.column("value"), "allow"), False).to_numpy(zero_copy_only=False),
        dtype=bool,
    )[keep]
    latest_time = np.full(n_pairs, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(latest_time, pair, when)
    candidate = when == latest_time[pair]
    latest_seq = np.full(n_pairs, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(latest_seq, pair[candidate], seq[candidate])
    winner = candidate & (seq == latest_seq[pair])
    present[pair[winner]] = True
    allow[pair[winner]] = says_allow[winner]
    return present, allow
