"""Counts of effective consent at many times over one snapshot (DESIGN.md, "Effective consent").

Every question is answered with vectorised passes over the snapshot's arrays, following the rules of
``consentry.consent.evaluate``: for each time, the population is the active accounts that existed then;
minors are deny; the latest explicit event at or before the time wins; otherwise the default of the
applicable policy version for the account's jurisdiction group.

All the times of a chart are counted together (:class:`Evaluator`): accounts fall into a few thousand
cohorts that share their defaults and eligibility at every one of the times, and each explicit event
decides its (account, setting) pair from its own time until the pair's next event, a range of the chart's
times; one pass over the events counts each in its cohort over that range (``explicit_counts``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property

import numpy as np

from consentry.consent.catalog import Jurisdictions
from consentry.consent.evaluate import to_micros
from consentry.consent.policy import Policy, ordered
from consentry.consent.rules import INACTIVE, MINOR, STATUS_ACTIVE, Values, holds_arrays
from consentry.web.snapshot import NO_BIRTH, Accounts, Array, Events, Snapshot


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
