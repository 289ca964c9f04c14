"""What the web pages show: the settings page of one account and the operator's dashboard.

The dashboard answers over every account: consent rates over time per setting and jurisdiction, current
opt-out shares, and what each policy version did. Reading a million accounts and their events out of the
database takes seconds, so :class:`ConsentStateCache` keeps them in memory as NumPy arrays (one copy per
process) and brings them up to date on every request:

* events are append-only with increasing ``seq``, so only events after the last seen one are read; they
  go into a small sorted *delta* that is folded into the *base* when it grows;
* new accounts (ids above the largest seen) are read the same way; account status changes (deactivation,
  deletion) have no change log, so the accounts are re-read in full when older than ``accounts_ttl``.

Every question is then answered with vectorised passes over the arrays, following the rules of
``consentry.consent.evaluate`` (DESIGN.md, "Effective consent"): for each time, the population is the
active accounts that existed then; minors are deny; the latest explicit event at or before the time wins;
otherwise the default of the applicable policy version for the account's jurisdiction group.

All the times of a chart are counted together (:class:`Evaluator`): accounts fall into a few thousand
cohorts that share their defaults and eligibility at every one of the times, and each explicit event
decides its (account, setting) pair from its own time until the pair's next event, a range of the chart's
times; one pass over the events counts each in its cohort over that range (``explicit_counts``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from consentry.consent.catalog import Jurisdictions
from consentry.consent.evaluate import group_index, to_micros
from consentry.consent.ledger import partition_count as ledger_partitions
from consentry.consent.policy import Policy, ordered
from consentry.consent.rules import INACTIVE, MINOR, STATUS_ACTIVE, Values, holds_arrays
from consentry.consent.service import ConsentContext, load_accounts, load_policies
from consentry.datasets.models import Recipient, Release
from consentry.datasets.service import ledger_events
from consentry.db import utcnow
from consentry.errors import InvalidInput
from consentry.metering import damages
from consentry.metering.schemas import TopOut
from consentry.metering.service import top
from consentry.partners.models import Revocation

Array = npt.NDArray[Any]
NO_BIRTH = -100_000
NEVER = int(np.iinfo(np.int64).max)
LATEST = datetime(9999, 12, 31, tzinfo=UTC)
RANGES = {"90d": "13 weeks", "12m": "12 months", "5y": "5 years"}
ALL = "All accounts"


# --- reading the database in bulk -------------------------------------------------------------------------


def read_events(session: Session, *, settings: Sequence[str], after_seq: int = 0) -> pa.Table:
    """Explicit events of still-mapped accounts with ``seq`` above ``after_seq`` for ``settings``."""
    if after_seq <= 0:
        return ledger_events(session, settings=settings, until=LATEST)
    from consentry.consent.models import ConsentEvent, Subject

    rows = session.execute(
        select(
            Subject.account_id,
            ConsentEvent.setting,
            ConsentEvent.value,
            ConsentEvent.recorded_at,
            ConsentEvent.seq,
        )
        .join(Subject, Subject.subject_key == ConsentEvent.subject_key)
        .where(ConsentEvent.seq > after_seq, ConsentEvent.setting.in_(list(settings)))
        .order_by(ConsentEvent.seq)
    ).all()
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [(), (), (), (), ()]
    return pa.table(
        {
            "account_id": pa.array(columns[0], pa.int64()),
            "setting": pa.array(columns[1], pa.string()),
            "value": pa.array(columns[2], pa.string()),
            "recorded_at": pa.array(columns[3], pa.timestamp("us", tz="UTC")),
            "seq": pa.array(columns[4], pa.int64()),
        }
    )


# --- in-memory consent state ------------------------------------------------------------------------------


def _np(column: pa.ChunkedArray | pa.Array, dtype: Any, fill: Any) -> Array:
    return np.asarray(pc.fill_null(column, fill).to_numpy(zero_copy_only=False), dtype=dtype)


@dataclass(frozen=True)
class Accounts:
    """Accounts as arrays, sorted by id."""

    ids: Array
    created: Array  # microseconds since the epoch
    group: Array  # index into Jurisdictions.names
    birth: Array  # NO_BIRTH when unknown
    active: Array
    changed: Array  # status change time; int64 min when none

    @classmethod
    def from_table(cls, table: pa.Table, jurisdictions: Jurisdictions) -> Accounts:
        """Arrays from a table in ``ACCOUNT_SCHEMA``."""
        table = table.sort_by("account_id")
        return cls(
            ids=_np(table["account_id"], np.int64, 0),
            created=_np(table["created_at"].cast(pa.int64()), np.int64, np.iinfo(np.int64).max),
            group=np.asarray(group_index(table["country"], jurisdictions), dtype=np.int64)
            if table.num_rows
            else np.zeros(0, dtype=np.int64),
            birth=_np(pc.cast(table["birth_year"], pa.int32()), np.int32, NO_BIRTH),
            active=_np(pc.equal(table["status"], "active"), bool, False),
            changed=_np(table["status_changed_at"].cast(pa.int64()), np.int64, np.iinfo(np.int64).min),
        )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def max_id(self) -> int:
        """The largest id held (0 when empty)."""
        return int(self.ids[-1]) if len(self.ids) else 0

    def extend(self, other: Accounts) -> Accounts:
        """These accounts followed by ``other`` (whose ids are all larger)."""
        if not len(other):
            return self
        return Accounts(
            *(np.concatenate([getattr(self, n), getattr(other, n)]) for n in self.__dataclass_fields__)
        )

    def index_of(self, account_ids: Array) -> Array:
        """Each id's position, -1 when absent."""
        n = len(self.ids)
        if n == 0 or len(account_ids) == 0:
            return np.full(len(account_ids), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.ids, account_ids), n - 1)
        return np.where(self.ids[pos] == account_ids, pos, -1).astype(np.int64)


@dataclass(frozen=True)
class Events:
    """Explicit events sorted by (account, setting) pair, then time, then seq, in runs of one pair."""

    pair: Array  # account_id * settings + setting code
    code: Array
    when: Array
    seq: Array
    allow: Array
    account: Array  # index into Accounts, -1 when unknown
    starts: Array  # first event of each run
    run_pair: Array

    @classmethod
    def build(cls, table: pa.Table, settings: Sequence[str], accounts: Accounts) -> Events:
        """Sort a table of events (``account_id, setting, value, recorded_at, seq``) into runs."""
        code = _np(
            pc.index_in(table["setting"], value_set=pa.array(list(settings), pa.string())), np.int64, -1
        )
        ids = _np(table["account_id"], np.int64, 0)
        when = _np(table["recorded_at"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()), np.int64, 0)
        seq = _np(table["seq"], np.int64, 0)
        allow = _np(pc.equal(table["value"], "allow"), bool, False)
        keep = code >= 0
        ids, code, when, seq, allow = ids[keep], code[keep], when[keep], seq[keep], allow[keep]
        pair = ids * len(settings) + code
        order = np.lexsort((seq, when, pair))
        return cls.sorted(pair[order], code[order], when[order], seq[order], allow[order], settings, accounts)

    @classmethod
    def sorted(
        cls,
        pair: Array,
        code: Array,
        when: Array,
        seq: Array,
        allow: Array,
        settings: Sequence[str],
        accounts: Accounts,
    ) -> Events:
        """Runs over arrays already in (pair, when, seq) order."""
        if len(pair):
            starts = np.flatnonzero(np.concatenate([[True], pair[1:] != pair[:-1]]))
        else:
            starts = np.zeros(0, dtype=np.int64)
        account = accounts.index_of(pair // max(len(settings), 1))
        return cls(pair, code, when, seq, allow, account, starts, pair[starts])

    def __len__(self) -> int:
        return len(self.pair)

    def merged(self, other: Events, settings: Sequence[str], accounts: Accounts) -> Events:
        """One sorted set holding both."""
        fields = ("pair", "code", "when", "seq", "allow")
        joined = [np.concatenate([getattr(self, f), getattr(other, f)]) for f in fields]
        order = np.lexsort((joined[3], joined[2], joined[0]))
        pair, code, when, seq, allow = (column[order] for column in joined)
        return Events.sorted(pair, code, when, seq, allow, settings, accounts)

    def remapped(self, settings: Sequence[str], accounts: Accounts) -> Events:
        """The same events with account positions looked up again (after accounts were re-read)."""
        return Events.sorted(self.pair, self.code, self.when, self.seq, self.allow, settings, accounts)

    @cached_property
    def until(self) -> Array:
        """Per event: the time of the next event of its pair (``NEVER`` for the last one of a run).

        An event decides its pair exactly at the times ``t`` with ``when <= t < until``: it is then the
        last of its run at or before ``t`` (a later event at the same time has a larger ``seq`` and takes
        over at once, so such an event decides at no time at all)."""
        until = np.full(len(self.pair), NEVER, dtype=np.int64)
        if len(self.pair) > 1:
            until[:-1] = np.where(self.pair[1:] == self.pair[:-1], self.when[1:], NEVER)
        return until


def empty_events(settings: Sequence[str], accounts: Accounts) -> Events:
    """No events."""
    nothing = np.zeros(0, dtype=np.int64)
    return Events.sorted(nothing, nothing, nothing, nothing, np.zeros(0, dtype=bool), settings, accounts)


@dataclass(frozen=True)
class Snapshot:
    """Accounts and events at one moment."""

    settings: tuple[str, ...]
    accounts: Accounts
    base: Events
    delta: Events
    last_seq: int
    loaded_at: datetime

    @property
    def events(self) -> int:
        """How many explicit events are held."""
        return len(self.base) + len(self.delta)

    @cached_property
    def overlay(self) -> tuple[Array, Events]:
        """The delta laid over the base: the positions of the base events whose pairs the delta also holds,
        and every event of those pairs (from base and delta) merged into one sorted set.

        The events deciding the pairs at any time are then the deciding base events outside the first,
        plus the deciding merged events; the pairs the delta touches are few, so this is cheap."""
        base, delta = self.base, self.delta
        nothing = np.zeros(0, dtype=np.int64)
        if not len(delta):
            return nothing, delta
        runs = len(base.run_pair)
        touched = nothing
        if runs:
            where = np.searchsorted(base.run_pair, delta.run_pair)
            clipped = np.minimum(where, runs - 1)
            run = clipped[(where < runs) & (base.run_pair[clipped] == delta.run_pair)]
            first = base.starts[run]
            length = np.append(base.starts[1:], len(base))[run] - first
            offsets = np.cumsum(length) - length
            touched = np.repeat(first - offsets, length) + np.arange(int(length.sum()), dtype=np.int64)
        fields = ("pair", "code", "when", "seq", "allow")
        joined = [np.concatenate([getattr(base, f)[touched], getattr(delta, f)]) for f in fields]
        order = np.lexsort((joined[3], joined[2], joined[0]))
        pair, code, when, seq, allow = (column[order] for column in joined)
        return touched, Events.sorted(pair, code, when, seq, allow, self.settings, self.accounts)

    def explicit_at(self, t: int) -> tuple[Array, Array, Array]:
        """Every (account position, setting code, allow) whose latest explicit event at or before ``t``
        decides it; pairs of accounts not held are left out."""
        touched, merged = self.overlay
        base = self.base
        in_base = (base.when <= t) & (base.until > t)
        in_base[touched] = False
        in_merged = (merged.when <= t) & (merged.until > t)
        account = np.concatenate([base.account[in_base], merged.account[in_merged]])
        code = np.concatenate([base.code[in_base], merged.code[in_merged]])
        allow = np.concatenate([base.allow[in_base], merged.allow[in_merged]])
        held = account >= 0
        return account[held], code[held], allow[held]


class ConsentStateCache:
    """The consent state of every account, kept in memory and brought up to date on each use."""

    def __init__(
        self,
        *,
        settings: Sequence[str],
        jurisdictions: Jurisdictions,
        accounts_ttl: float = 300.0,
        fold_at: int = 20_000,
    ) -> None:
        self.settings = tuple(settings)
        self.jurisdictions = jurisdictions
        self.accounts_ttl = accounts_ttl
        self.fold_at = fold_at
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._accounts_read = 0.0

    def invalidate(self) -> None:
        """Forget everything; the next use reads all again."""
        with self._lock:
            self._snapshot = None

    def current(self, session: Session) -> Snapshot:
        """The state as of now: read in full the first time, then only what changed."""
        with self._lock:
            snapshot = self._snapshot
            if snapshot is not None and ledger_partitions(session) > 1:
                snapshot = None  # several partitions' seqs interleave: no seq cursor, read in full
            now = time.monotonic()
            if snapshot is None or now - self._accounts_read > self.accounts_ttl:
                accounts = Accounts.from_table(load_accounts(session), self.jurisdictions)
                self._accounts_read = now
                if snapshot is None:
                    table = read_events(session, settings=self.settings)
                    seq = pc.max(table["seq"]).as_py() if table.num_rows else 0
                    base = Events.build(table, self.settings, accounts)
                    snapshot = Snapshot(
                        self.settings,
                        accounts,
                        base,
                        empty_events(self.settings, accounts),
                        seq or 0,
                        utcnow(),
                    )
                else:
                    snapshot = Snapshot(
                        self.settings,
                        accounts,
                        snapshot.base.remapped(self.settings, accounts),
                        snapshot.delta.remapped(self.settings, accounts),
                        snapshot.last_seq,
                        snapshot.loaded_at,
                    )
            accounts = snapshot.accounts.extend(
                Accounts.from_table(
                    load_accounts(session, above=snapshot.accounts.max_id), self.jurisdictions
                )
            )
            fresh = read_events(session, settings=self.settings, after_seq=snapshot.last_seq)
            base, delta = snapshot.base, snapshot.delta
            if len(accounts) != len(snapshot.accounts):
                base, delta = base.remapped(self.settings, accounts), delta.remapped(self.settings, accounts)
            last_seq = snapshot.last_seq
            if fresh.num_rows:
                last_seq = max(last_seq, int(pc.max(fresh["seq"]).as_py()))
                delta = delta.merged(Events.build(fresh, self.settings, accounts), self.settings, accounts)
                if len(delta) > self.fold_at:
                    base, delta = (
                        base.merged(delta, self.settings, accounts),
                        empty_events(self.settings, accounts),
                    )
            fresh_snapshot = Snapshot(self.settings, accounts, base, delta, last_seq, utcnow())
            self._snapshot = fresh_snapshot
            return fresh_snapshot


# --- answers over the state -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateAt:
    """Counts at one time, per jurisdiction group ``g`` and setting ``s``."""

    at: datetime
    population: Array  # (G,) active accounts that existed at ``at``
    minors: Array  # (G,) of which minors (always deny)
    allow: Array  # (G, S)
    explicit_deny: Array  # (G, S)
    governs: Array  # (P + 1,) accounts per applicable version (0: none), over the population


def _defaults(policies: Sequence[Policy], jurisdictions: Jurisdictions, settings: Sequence[str]) -> Array:
    """(P + 1, G, S) booleans: row 0 is "no policy" (deny), row i + 1 is ordered policy i."""
    table = np.zeros((len(policies) + 1, len(jurisdictions.names), len(settings)), dtype=bool)
    for index, policy in enumerate(policies):
        for g, group in enumerate(jurisdictions.names):
            table[index + 1, g] = [policy.default(group, key) == "allow" for key in settings]
    return table


def _chosen(policies: Sequence[Policy], created: Array, t: int) -> Array:
    chosen = np.zeros(len(created), dtype=np.int64)
    for index, policy in enumerate(policies):
        effective = to_micros(policy.effective_at)
        if effective > t:
            continue
        if policy.applies_to == "all":
            chosen[:] = index + 1
        else:
            chosen[created >= effective] = index + 1
    return chosen


def _inactive(active: Array, changed: Array, at: datetime) -> Array:
    """The rule table's ``INACTIVE`` over the dashboard's arrays (``changed``: int64 min when none)."""
    n = len(active)
    arrays = {
        ("account", "status"): Values(np.where(active, STATUS_ACTIVE, ""), np.zeros(n, dtype=bool)),
        ("account", "status_changed_at"): Values(changed, changed == np.iinfo(np.int64).min),
    }
    return holds_arrays(INACTIVE, arrays, size=n, now=at)


def _masks(accounts: Accounts, at: datetime) -> tuple[Array, Array]:
    """Population (active, existing at ``at``) and eligible (population minus minors) masks."""
    t = to_micros(at)
    inactive = _inactive(accounts.active, accounts.changed, at)
    population = (accounts.created <= t) & ~inactive
    return population, population & ~_minor(accounts.birth, at.year)


DENSE_COHORT_KEYS = 1 << 20


def _years(breaks: Array) -> Array:
    """The calendar years (UTC) of the breaks, widened by one year either side so that a time given in
    any time zone falls in one of them."""
    if not len(breaks):
        return np.zeros(0, dtype=np.int64)
    years = breaks.astype("datetime64[us]").astype("datetime64[Y]").astype(np.int64) + 1970
    return np.unique(np.concatenate([years - 1, years, years + 1]))


def _unique_small(values: Array) -> tuple[Array, Array]:
    """``np.unique(values, return_inverse=True)`` for integers of a small range, without sorting."""
    if not len(values):
        return values, np.zeros(0, dtype=np.int64)
    low, high = int(values.min()), int(values.max())
    if high - low >= DENSE_COHORT_KEYS:
        unique, inverse = np.unique(values, return_inverse=True)
        return unique, np.asarray(inverse, dtype=np.int64).reshape(-1)
    seen = np.zeros(high - low + 1, dtype=bool)
    seen[values - low] = True
    position = np.cumsum(seen) - 1
    return np.flatnonzero(seen) + low, position[values - low]


def _birth_classes(birth: Array, years: Array) -> tuple[Array, Array]:
    """Each birth year's class and one representative birth year per class: births in a class are minors
    (``_minor``, the rule table's ``MINOR``) in exactly the same of ``years``."""
    births, inverse = _unique_small(birth.astype(np.int64))
    if not len(births) or not len(years):
        return np.zeros(len(birth), dtype=np.int64), births[:1].astype(np.int64)
    pattern = np.stack([_minor(births, int(year)) for year in years], axis=1).reshape(len(births), len(years))
    _, first, classes = np.unique(pattern, axis=0, return_index=True, return_inverse=True)
    representative = births[first].astype(np.int64)
    return np.asarray(classes, dtype=np.int64).reshape(-1)[inverse.reshape(-1)], representative


@dataclass(frozen=True)
class Cohorts:
    """Accounts counted by what decides their defaults at a fixed set of times (``breaks``): jurisdiction
    group, when they were created and deactivated relative to the breaks, and whether they are minors in
    each break's year. A million accounts become a few thousand cohorts, so each time costs next to
    nothing."""

    breaks: Array
    group: Array
    created_le: Array  # created <= breaks[j]  <=>  created_le <= j
    created_ge: Array  # created >= breaks[j]  <=>  created_ge > j
    inactive: Array  # inactive at breaks[j]  <=>  inactive <= j
    birth: Array  # a birth year standing for the cohort's (the same minors in every break's year)
    count: Array
    of_account: Array  # each account's cohort

    @classmethod
    def build(cls, accounts: Accounts, times: Sequence[int]) -> Cohorts:
        """Cohorts of ``accounts`` for the given times (microseconds)."""
        breaks = np.unique(np.asarray(list(times), dtype=np.int64))
        radix = len(breaks) + 2
        created_le = np.searchsorted(breaks, accounts.created, "left")
        exact = np.searchsorted(breaks, accounts.created, "right") - created_le  # 0 or 1
        inactive = np.where(accounts.active, radix - 1, np.searchsorted(breaks, accounts.changed, "left"))
        birth_class, representative = _birth_classes(accounts.birth, _years(breaks))
        classes = len(representative)
        key = (((accounts.group * radix + created_le) * 2 + exact) * radix + inactive) * classes
        key = key + birth_class
        space = (int(accounts.group.max()) + 1 if len(key) else 0) * radix * 2 * radix * classes
        if space <= max(DENSE_COHORT_KEYS, 2 * len(key)):  # no sort needed: count each possible key
            counts = np.bincount(key, minlength=space)
            present = counts > 0
            unique = np.flatnonzero(present)
            count = counts[unique]
            of_account = (np.cumsum(present) - 1)[key]
        else:
            unique, of_account, count = np.unique(key, return_inverse=True, return_counts=True)
        rest, birth_class = unique // classes, unique % classes
        rest, inactive = rest // radix, rest % radix
        rest, exact = rest // 2, rest % 2
        group, created_le = rest // radix, rest % radix
        return cls(
            breaks,
            group,
            created_le,
            created_le + exact,
            inactive,
            representative[birth_class],
            count,
            np.asarray(of_account, dtype=np.int64).reshape(-1),
        )


def _minor(birth: Array, year: int) -> Array:
    """The rule table's ``MINOR`` in ``year`` over birth years (``NO_BIRTH`` when unknown)."""
    n = len(birth)
    arrays = {("account", "birth_year"): Values(birth.astype(np.int64), birth == NO_BIRTH)}
    return holds_arrays(MINOR, arrays, size=n, now=datetime(year, 7, 1, tzinfo=UTC))


def explicit_counts(snapshot: Snapshot, cohorts: Cohorts) -> Array:
    """(breaks, cohorts, settings, 2): at each break, how many of each cohort's (account, setting) pairs
    are decided by an explicit deny (``[..., 0]``) or allow (``[..., 1]``), in one pass over the events.

    An event decides its pair at the breaks ``j`` with ``when <= breaks[j] < until``, a range of break
    indices: it adds one at the first and takes one away after the last, and a running sum over the
    breaks gives the counts at each. Events of accounts not held are left out."""
    c, settings = cohorts, len(snapshot.settings)
    breaks, n_cohorts = len(c.breaks), len(c.count)
    width = (n_cohorts + 1) * settings * 2  # the extra cohort collects accounts not held
    cohort_of = np.append(c.of_account, n_cohorts)  # position -1 (not held) -> the extra cohort

    def bounds(events: Events) -> tuple[Array, Array]:
        cell = (cohort_of[events.account] * settings + events.code) * 2 + events.allow
        first = np.searchsorted(c.breaks, events.when, "left") * width + cell
        after = np.searchsorted(c.breaks, events.until, "left") * width + cell
        return first, after

    touched, merged = snapshot.overlay
    base_first, base_after = bounds(snapshot.base)
    merged_first, merged_after = bounds(merged)
    size = (breaks + 1) * width
    plus = np.concatenate([base_first, base_after[touched], merged_first])
    minus = np.concatenate([base_after, base_first[touched], merged_after])
    steps = np.bincount(plus, minlength=size) - np.bincount(minus, minlength=size)
    counts = np.cumsum(steps.reshape(breaks + 1, n_cohorts + 1, settings, 2), axis=0)
    return counts[:breaks, :n_cohorts]


class Evaluator:
    """Counts of effective consent at many times over one snapshot (DESIGN.md, "Effective consent")."""

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        policies: Sequence[Policy],
        jurisdictions: Jurisdictions,
        times: Sequence[datetime],
    ) -> None:
        self.snapshot = snapshot
        self.policies = ordered(policies)
        self.groups = len(jurisdictions.names)
        self.settings = len(snapshot.settings)
        self.table = _defaults(self.policies, jurisdictions, snapshot.settings)
        moments = [to_micros(t) for t in times] + [to_micros(p.effective_at) for p in self.policies]
        self.cohorts = Cohorts.build(snapshot.accounts, moments)
        self.effective = [int(np.searchsorted(self.cohorts.breaks, m)) for m in moments[len(times) :]]
        self.members = (self.cohorts.group == np.arange(self.groups)[:, None]).astype(np.int64)  # (G, C)

    @cached_property
    def explicit(self) -> Array:
        """The explicit choices at every break (``explicit_counts``), computed on first use."""
        return explicit_counts(self.snapshot, self.cohorts)

    def state(self, at: datetime) -> StateAt:
        """The counts at ``at``, which must be one of the evaluator's times."""
        t = to_micros(at)
        c = self.cohorts
        j = int(np.searchsorted(c.breaks, t))
        if j >= len(c.breaks) or c.breaks[j] != t:
            raise ValueError("state() needs one of the times the evaluator was built for")
        groups, policies = self.groups, self.policies
        population = (c.created_le <= j) & (c.inactive > j)
        eligible = population & ~_minor(c.birth, at.year)
        chosen = np.zeros(len(c.count), dtype=np.int64)
        for index, p in enumerate(self.effective):
            if p > j:
                continue
            if policies[index].applies_to == "all":
                chosen[:] = index + 1
            else:
                chosen[c.created_ge > p] = index + 1
        cells = (len(policies) + 1) * groups
        weight = np.where(eligible, c.count, 0)
        per_cell = np.bincount(chosen * groups + c.group, weights=weight, minlength=cells)
        allow = np.einsum(
            "cg,cgs->gs", np.rint(per_cell).astype(np.int64).reshape(-1, groups), self.table.astype(np.int64)
        )
        default = self.table[chosen, c.group]  # (C, S)
        decided = self.explicit[j] * eligible[:, None, None]  # (C, S, 2): deny, allow
        gained = self.members @ (decided[..., 1] * ~default)
        lost = self.members @ (decided[..., 0] * default)
        explicit_deny = self.members @ decided[..., 0]
        by_group = np.bincount(c.group, weights=np.where(population, c.count, 0), minlength=groups)
        minors = np.bincount(c.group, weights=np.where(population & ~eligible, c.count, 0), minlength=groups)
        governs = np.bincount(chosen, weights=np.where(population, c.count, 0), minlength=len(policies) + 1)
        return StateAt(
            at=at,
            population=np.rint(by_group).astype(np.int64),
            minors=np.rint(minors).astype(np.int64),
            allow=allow + gained - lost,
            explicit_deny=explicit_deny,
            governs=np.rint(governs).astype(np.int64),
        )


def state_at(
    snapshot: Snapshot, *, at: datetime, policies: Sequence[Policy], jurisdictions: Jurisdictions
) -> StateAt:
    """Effective consent counts at ``at`` (the rules of ``consentry.consent.evaluate``)."""
    return Evaluator(snapshot, policies=policies, jurisdictions=jurisdictions, times=[at]).state(at)


@dataclass(frozen=True)
class PolicyEffect:
    """What one policy version did (or will do) when it takes effect, and whom it governs now."""

    version: int
    governs_now: int
    changed_accounts: int
    to_allow: int
    to_deny: int


def policy_effects(
    snapshot: Snapshot,
    *,
    policies: Sequence[Policy],
    jurisdictions: Jurisdictions,
    now: datetime,
    governs: Array | None = None,
) -> dict[int, PolicyEffect]:
    """For each version: active accounts it governs now, and the accounts whose effective consent it
    changed at its ``effective_at`` (for a scheduled version: will change, with the choices known now)."""
    accounts, settings = snapshot.accounts, snapshot.settings
    ordered_all = ordered(policies)
    if governs is None:
        governs = state_at(snapshot, at=now, policies=policies, jurisdictions=jurisdictions).governs
    groups = len(jurisdictions.names)
    with_table = _defaults(ordered_all, jurisdictions, settings).reshape(-1, len(settings))
    effects: dict[int, PolicyEffect] = {}
    for index, policy in enumerate(ordered_all):
        at = policy.effective_at
        t = to_micros(at)
        _, eligible = _masks(accounts, at)
        others = [p for p in ordered_all if p.version != policy.version]
        without_table = _defaults(others, jurisdictions, settings).reshape(-1, len(settings))
        # an account's defaults with and without the version: rows (applicable version, group)
        after_row = _chosen(ordered_all, accounts.created, t) * groups + accounts.group
        before_row = _chosen(others, accounts.created, t) * groups + accounts.group
        pair_row = before_row * len(with_table) + after_row
        flips = (without_table[:, None, :] != with_table[None, :, :]).reshape(-1, len(settings))
        changed = np.zeros(len(accounts), dtype=bool)
        to_allow, to_deny = changed.copy(), changed.copy()
        explicit: tuple[Array, Array, Array] | None = None
        for s in range(len(settings)):
            flipped = flips[:, s][pair_row] & eligible
            if not flipped.any():
                continue
            if explicit is None:
                explicit = snapshot.explicit_at(t)
            account, code, _ = explicit
            flipped[account[code == s]] = False  # an explicit choice stands
            allowed = with_table[:, s][after_row]
            changed |= flipped
            to_allow |= flipped & allowed
            to_deny |= flipped & ~allowed
        effects[policy.version] = PolicyEffect(
            version=policy.version,
            governs_now=int(governs[index + 1]),
            changed_accounts=int(np.count_nonzero(changed)),
            to_allow=int(np.count_nonzero(to_allow)),
            to_deny=int(np.count_nonzero(to_deny)),
        )
    return effects


def timeline(now: datetime, range_key: str) -> list[datetime]:
    """The times a chart samples: weekly over 13 weeks, monthly over 12 months, or quarterly over 5
    years, ending now."""
    if range_key not in RANGES:
        raise InvalidInput(f"range must be one of {', '.join(RANGES)}", field="range")
    if range_key == "90d":
        return [now - timedelta(weeks=13 - i) for i in range(13)] + [now]
    step, count = (1, 12) if range_key == "12m" else (3, 20)
    month = now.year * 12 + now.month - 1
    month -= month % step
    points = []
    for i in range(count, 0, -1):
        m = month - (i - 1) * step
        points.append(datetime(m // 12, m % 12 + 1, 1, tzinfo=UTC))
    return [p for p in points if p < now] + [now]


# --- the dashboard ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShareRow:
    """Current opt-out figures of one setting in one group (or over all groups)."""

    group: str
    population: int
    allow: int
    explicit_deny: int
    default_deny: int
    minors: int

    @property
    def deny_share(self) -> float:
        """Share of the population whose effective consent is deny."""
        return 1 - self.allow / self.population if self.population else 0.0


@dataclass(frozen=True)
class SettingShares:
    """Current opt-out figures of one setting."""

    key: str
    label: str
    total: ShareRow
    groups: list[ShareRow]


@dataclass(frozen=True)
class ConsentOverview:
    """Consent rates over time and now, and policy effects, over every account."""

    as_of: datetime
    accounts: int
    population: int
    events: int
    groups: list[str]
    times: list[datetime]
    rates: dict[str, dict[str, list[float | None]]]  # setting -> group (or ALL) -> share allowing
    shares: list[SettingShares]
    effects: dict[int, PolicyEffect]


def consent_overview(
    session: Session,
    *,
    cache: ConsentStateCache,
    ctx: ConsentContext,
    range_key: str = "12m",
    now: datetime | None = None,
) -> ConsentOverview:
    """Everything the dashboard shows about consent, from the cached state brought up to date."""
    now = now or utcnow()
    times = timeline(now, range_key)
    snapshot = cache.current(session)
    policies = load_policies(session)
    jurisdictions, keys = ctx.jurisdictions, list(snapshot.settings)
    evaluator = Evaluator(snapshot, policies=policies, jurisdictions=jurisdictions, times=times)
    states = [evaluator.state(t) for t in times]
    final = states[-1]
    groups = [g for i, g in enumerate(jurisdictions.names) if final.population[i] > 0]
    rates: dict[str, dict[str, list[float | None]]] = {}
    for s, key in enumerate(keys):
        lines: dict[str, list[float | None]] = {ALL: []}
        for state in states:
            total = int(state.population.sum())
            lines[ALL].append(float(state.allow[:, s].sum()) / total if total else None)
        for group in groups:
            g = jurisdictions.names.index(group)
            lines[group] = [
                float(state.allow[g, s]) / int(state.population[g]) if state.population[g] else None
                for state in states
            ]
        rates[key] = lines
    shares = []
    for s, key in enumerate(keys):

        def row(name: str, index: slice | int, s: int = s) -> ShareRow:
            population = int(np.sum(final.population[index]))
            minors = int(np.sum(final.minors[index]))
            allow = int(np.sum(final.allow[index, s]))
            explicit = int(np.sum(final.explicit_deny[index, s]))
            return ShareRow(name, population, allow, explicit, population - minors - allow - explicit, minors)

        shares.append(
            SettingShares(
                key=key,
                label=ctx.catalog.get(key).label,
                total=row(ALL, slice(None)),
                groups=[row(g, jurisdictions.names.index(g)) for g in groups],
            )
        )
    return ConsentOverview(
        as_of=now,
        accounts=len(snapshot.accounts),
        population=int(final.population.sum()),
        events=snapshot.events,
        groups=groups,
        times=times,
        rates=rates,
        shares=shares,
        effects=policy_effects(
            snapshot, policies=policies, jurisdictions=jurisdictions, now=now, governs=final.governs
        ),
    )


@dataclass(frozen=True)
class ReleaseRow:
    """A release and how much consent and deletions kept out of it."""

    id: str
    recipient: str
    purpose: str
    categories: list[str]
    status: str
    rows: int
    excluded: int
    removals: int
    created_at: datetime

    @property
    def excluded_share(self) -> float:
        """Share of candidate records left out."""
        total = self.rows + self.excluded
        return self.excluded / total if total else 0.0


def recent_releases(session: Session, *, limit: int = 10) -> list[ReleaseRow]:
    """The newest releases with their exclusion counts."""
    rows = session.execute(
        select(
            Release.id,
            Recipient.name,
            Release.purpose,
            Release.categories,
            Release.status,
            Release.rows,
            Release.excluded,
            Release.removals,
            Release.created_at,
        )
        .join(Recipient, Recipient.id == Release.recipient_id)
        .order_by(Release.created_at.desc(), Release.id.desc())
        .limit(limit)
    ).all()
    return [
        ReleaseRow(r[0], r[1], r[2], list(r[3] or []), r[4], int(r[5]), int(r[6]), int(r[7] or 0), r[8])
        for r in rows
    ]


@dataclass(frozen=True)
class PartnerRow:
    """A recipient and the state of the revocations sent to it."""

    name: str
    kind: str
    status: str
    pending: int
    overdue: int
    acknowledged: int
    oldest_overdue: datetime | None


def partner_revocations(session: Session, *, now: datetime | None = None) -> list[PartnerRow]:
    """Every recipient with its pending (not yet due), overdue and acknowledged revocations, in one
    grouped query; most overdue first."""
    now = now or utcnow()
    open_ = Revocation.acknowledged_at.is_(None)
    late = and_(open_, Revocation.deadline_at < now)
    rows = session.execute(
        select(
            Recipient.name,
            Recipient.kind,
            Recipient.status,
            func.coalesce(func.sum(case((and_(open_, Revocation.deadline_at >= now), 1), else_=0)), 0),
            func.coalesce(func.sum(case((late, 1), else_=0)), 0),
            func.count(Revocation.acknowledged_at),
            func.min(case((late, Revocation.deadline_at), else_=None)),
        )
        .outerjoin(Revocation, Revocation.recipient_id == Recipient.id)
        .group_by(Recipient.id, Recipient.name, Recipient.kind, Recipient.status)
    ).all()
    partners = [
        PartnerRow(
            name=r[0],
            kind=r[1],
            status=r[2],
            pending=int(r[3]),
            overdue=int(r[4]),
            acknowledged=int(r[5]),
            oldest_overdue=r[6].replace(tzinfo=UTC)
            if isinstance(r[6], datetime) and r[6].tzinfo is None
            else r[6],
        )
        for r in rows
    ]
    return sorted(partners, key=lambda p: (-p.overdue, -p.pending, p.name))


def leaderboard(session: Session, *, threshold: int, limit: int = 10, now: datetime | None = None) -> TopOut:
    """Scrapers by posts served in the last 24 hours, with projected damages (the metering ranking)."""
    return top(session, now=now, limit=limit, terms=damages.Terms(threshold=threshold))


# --- the settings page --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRow:
    """One event of the account's consent history, as the page shows it."""

    seq: int
    setting: str
    label: str
    value: str
    source: str
    client: str
    recorded_at: datetime
    chosen_from: str = ""
    """For a choice made from a linked account: that account's handle (``"another account"`` once the
    link or the account is gone); empty for the account's own choices."""


@dataclass
class SettingsPage:
    """What the settings page of one account shows (the consent part is ``consentry.consent.service``)."""

    account_id: int
    handle: str
    group: str
    states: list[Any]
    history: list[HistoryRow] = field(default_factory=list)
    usage: list[Any] = field(default_factory=list)
    choice_times: dict[str, datetime] = field(default_factory=dict)
    gpc_choices: set[str] = field(default_factory=set)
    links: list[Any] = field(default_factory=list)

    @property
    def linked(self) -> list[Any]:
        """The confirmed links (a change of scope ``linked`` reaches these accounts)."""
        return [link for link in self.links if link.status == "confirmed"]


def settings_page(
    session: Session, *, account_id: int, ctx: ConsentContext, history_limit: int = 50
) -> SettingsPage:
    """The settings, consent history and data usage of one account."""
    from consentry.consent import ledger
    from consentry.consent import service as consent
    from consentry.links.service import links_of, subject_keys
    from consentry.partners.usage import data_usage
    from consentry.social.service import get_account

    account = get_account(session, account_id)
    states = consent.settings_view(session, account_id=account_id, ctx=ctx)
    events = consent.history(session, account_id=account_id, limit=history_limit)
    links = links_of(session, account_id=account_id)
    own = ledger.subject_key_for(session, account_id, create=False)
    handles = {link.account_id: link.handle for link in links}
    by_subject = {key: "@" + handles[other] for other, key in subject_keys(session, list(handles)).items()}
    labels = {s.key: s.label for s in ctx.catalog.settings}
    history = [
        HistoryRow(
            e.seq,
            e.setting,
            labels.get(e.setting, e.setting),
            e.value,
            e.source,
            e.client,
            e.recorded_at,
            ""
            if e.chosen_by is None or e.chosen_by == own
            else by_subject.get(e.chosen_by, "another account"),
        )
        for e in events
    ]
    by_seq = {e.seq: e for e in events}
    choice_times: dict[str, datetime] = {}
    gpc: set[str] = set()
    for state in states:
        if state.seq is None:
            continue
        event = by_seq.get(state.seq)
        if event is None:
            from consentry.consent.models import ConsentEvent

            event = session.get(ConsentEvent, state.seq)
        if event is not None:
            choice_times[state.key] = event.recorded_at
            if event.source == "gpc":
                gpc.add(state.key)
    return SettingsPage(
        account_id=account_id,
        handle=account.handle,
        group=ctx.jurisdictions.group_of(account.country),
        states=states,
        history=history,
        usage=list(data_usage(session, account_id=account_id)),
        choice_times=choice_times,
        gpc_choices=gpc,
        links=links,
    )
