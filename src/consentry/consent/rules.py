"""The rules of DESIGN.md written once, as data, and every form derived from them.

Two ordered tables hold the rules:

* ``CONSENT_STEPS``: effective consent of account A for setting S at time t ("Effective consent", steps
  1-4). Each step is a condition with the value it gives when the condition holds; the first that holds
  decides. The account conditions (minor, inactive) are expressions over the account's columns and the
  time t; the explicit event and the policy default are look-ups the evaluators perform.
* ``EXCLUSIONS``: why a record is not eligible for a release, in precedence order; a record's reason
  code is its position plus one (0: eligible). Each reason is a condition over the record's columns
  (``record``), the author's facts (``author``), or the author's account itself (``account``; those
  are decided once per author into the ``blocked`` fact, which holds the code of the first that holds).

Conditions are written in the small expression language of ``consentry.consent.expr`` (SQL's
three-valued logic), and each has four readings:

* ``evaluate``: one row of Python values (``None`` is null);
* ``evaluate_arrays``: NumPy arrays (values plus a null mask), for millions of rows at once;
* ``to_sql``: an SQL expression, with a dialect for timestamp literals (DuckDB and Spark);
* ``changes_at``: per row, the first instant after t at which the condition may change by time alone
  (what the eligibility cache's ``valid_until`` is made of).

``negate`` turns a condition into the predicate that holds exactly when it does not (null counting as
false), written as plain comparisons an engine can push into its scans. Changing a rule is one edit of
a table below; the property test in tests/consent/test_rules.py runs every form over the same generated
histories and names any form that disagrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np

from consentry.consent.expr import (
    DUCKDB as DUCKDB,
)
from consentry.consent.expr import (
    EPOCH as EPOCH,
)
from consentry.consent.expr import (
    NEVER as NEVER,
)
from consentry.consent.expr import (
    ONE_MICROSECOND as ONE_MICROSECOND,
)
from consentry.consent.expr import (
    SPARK as SPARK,
)
from consentry.consent.expr import (  # the language the rules are written in, used with them
    And as And,
)
from consentry.consent.expr import (
    Arrays as Arrays,
)
from consentry.consent.expr import (
    Cmp as Cmp,
)
from consentry.consent.expr import (
    Coalesce as Coalesce,
)
from consentry.consent.expr import (
    Col as Col,
)
from consentry.consent.expr import (
    Dialect as Dialect,
)
from consentry.consent.expr import (
    Expr as Expr,
)
from consentry.consent.expr import (
    IsNull as IsNull,
)
from consentry.consent.expr import (
    Lit as Lit,
)
from consentry.consent.expr import (
    Not as Not,
)
from consentry.consent.expr import (
    Now as Now,
)
from consentry.consent.expr import (
    Or as Or,
)
from consentry.consent.expr import (
    Param as Param,
)
from consentry.consent.expr import (
    Sub as Sub,
)
from consentry.consent.expr import (
    Values as Values,
)
from consentry.consent.expr import (
    Year as Year,
)
from consentry.consent.expr import (
    arrays_of as arrays_of,
)
from consentry.consent.expr import (
    bind as bind,
)
from consentry.consent.expr import (
    changes_at as changes_at,
)
from consentry.consent.expr import (
    columns_of as columns_of,
)
from consentry.consent.expr import (
    evaluate as evaluate,
)
from consentry.consent.expr import (
    evaluate_arrays as evaluate_arrays,
)
from consentry.consent.expr import (
    holds as holds,
)
from consentry.consent.expr import (
    holds_arrays as holds_arrays,
)
from consentry.consent.expr import (
    negate as negate,
)
from consentry.consent.expr import (
    to_micros as to_micros,
)
from consentry.consent.expr import (
    to_sql as to_sql,
)

# --- the consent rule -------------------------------------------------------------------------------

MINOR_AGE = 18
STATUS_ACTIVE = "active"

MINOR: Expr = Or(
    (
        IsNull(Col("account", "birth_year")),
        Cmp("<=", Sub(Year(), Col("account", "birth_year")), Lit(MINOR_AGE)),
    )
)
"""A minor at t: ``year(t) - birth_year <= 18``, or no birth year (fail closed)."""
INACTIVE: Expr = And(
    (
        Cmp("<>", Coalesce(Col("account", "status"), Lit("")), Lit(STATUS_ACTIVE)),
        Or(
            (
                IsNull(Col("account", "status_changed_at")),
                Cmp("<=", Col("account", "status_changed_at"), Now()),
            )
        ),
    )
)
"""Deactivated or deleted at t: a status other than active, changed at or before t (or at an unknown time)."""

Source = Literal["deny", "explicit", "default"]


@dataclass(frozen=True)
class Step:
    """One step of effective consent: where ``when`` holds (always, without one), the value comes from
    ``source`` - deny, the latest explicit event (if any), or the applicable policy's default (if any)."""

    basis: str
    source: Source
    when: Expr | None = None


CONSENT_STEPS: tuple[Step, ...] = (
    Step("minor", "deny", MINOR),
    Step("inactive", "deny", INACTIVE),
    Step("explicit", "explicit"),
    Step("default", "default"),
    Step("no_policy", "deny"),
)
"""DESIGN.md "Effective consent", in order: the first step that applies decides."""

ACCOUNT_STEPS: tuple[Step, ...] = tuple(s for s in CONSENT_STEPS if s.when is not None)
"""The steps decided by the account alone (their position plus one is ``evaluate_many``'s reason)."""


# --- the eligibility rule ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Exclusion:
    """One reason a record is not eligible: it applies when any of its parts holds. ``account`` parts
    are decided per author (into the ``blocked`` fact); ``unknown_author`` also applies it to records
    whose author is missing from the accounts; ``audience`` parts apply to categories with an audience;
    ``needs`` names a parameter without which the reason does not apply (no retention window)."""

    name: str
    account: Expr | None = None
    record: Expr | None = None
    author: Expr | None = None
    unknown_author: bool = False
    audience: bool = False
    needs: str | None = None


EXCLUSIONS: tuple[Exclusion, ...] = (
    Exclusion("inactive_account", account=INACTIVE, unknown_author=True),
    Exclusion("minor", account=MINOR),
    Exclusion(
        "deleted",
        record=And((Not(IsNull(Col("record", "deleted_at"))), Cmp("<=", Col("record", "deleted_at"), Now()))),
    ),
    Exclusion(
        "not_public",
        record=Cmp("<>", Coalesce(Col("record", "visibility"), Lit("")), Lit("public")),
        author=Coalesce(Col("author", "protected"), Lit(True)),
        audience=True,
    ),
    Exclusion("opted_out", author=Not(Coalesce(Col("author", "ok_{category}"), Lit(False)))),
    Exclusion(
        "outside_retention", record=Cmp("<", Col("record", "created_at"), Param("cutoff")), needs="cutoff"
    ),
)
"""DESIGN.md "eligible for a release", in precedence order; a reason's code is its position plus one."""

REASONS: tuple[str, ...] = tuple(e.name for e in EXCLUSIONS)
"""Exclusion reasons in precedence order; a record's reason code is its index here plus one (0: eligible)."""
ELIGIBLE = 0


def code_of(name: str) -> int:
    """The reason code of an exclusion."""
    return REASONS.index(name) + 1


ACCOUNT_EXCLUSIONS: tuple[tuple[int, Exclusion], ...] = tuple(
    (code, e) for code, e in enumerate(EXCLUSIONS, 1) if e.account is not None
)
"""The exclusions decided per author from the account, with their codes (the ``blocked`` fact)."""


@dataclass(frozen=True)
class Part:
    """One applicable condition of an exclusion, bound to a category."""

    code: int
    record: Expr | None
    author: Expr | None
    """The author-level condition: the ``blocked`` fact for account exclusions, else the author part."""
    account: bool = False
    """Decided per author into ``blocked`` (which is 0 exactly when no such exclusion holds)."""


def exclusion_parts(*, category: str, has_audience: bool, cutoff: datetime | None) -> tuple[Part, ...]:
    """The exclusions that apply to records of ``category``, in order, bound to its columns."""
    present = {"cutoff": cutoff is not None}
    parts: list[Part] = []
    for code, exclusion in enumerate(EXCLUSIONS, 1):
        if exclusion.audience and not has_audience:
            continue
        if exclusion.needs is not None and not present.get(exclusion.needs, False):
            continue
        author: Expr | None = exclusion.author and bind(exclusion.author, category=category)
        if exclusion.account is not None:
            author = Cmp("=", Col("author", "blocked"), Lit(code))
            if exclusion.unknown_author:
                author = Or((IsNull(Col("author", "account_id")), author))
        record = exclusion.record and bind(exclusion.record, category=category)
        parts.append(Part(code, record, author, account=exclusion.account is not None))
    return tuple(parts)


def condition(part: Part) -> Expr:
    """The whole condition of one exclusion part (record part or author part)."""
    pieces = tuple(p for p in (part.record, part.author) if p is not None)
    return pieces[0] if len(pieces) == 1 else Or(pieces)


def next_change(
    now: datetime,
    *,
    accounts: Arrays,
    size: int,
    event_times: np.ndarray,
    policy_times: np.ndarray,
) -> int:
    """The first instant (int64 microseconds) after ``now`` at which effective consent of these accounts
    may change by time alone, read from ``CONSENT_STEPS``: where a step's condition may change
    (``changes_at``), an explicit event recorded in the future (``event_times``), a policy version taking
    effect (``policy_times``). ``NEVER`` if nothing can."""
    t = to_micros(now)
    bound = NEVER
    for step in CONSENT_STEPS:
        if step.when is not None and size:
            bound = min(bound, int(changes_at(step.when, accounts, size=size, now=now).min()))
        times = {"explicit": event_times, "default": policy_times}.get(step.source)
        if times is not None:
            future = times[times > t]
            if future.size:
                bound = min(bound, int(future.min()))
    return bound
