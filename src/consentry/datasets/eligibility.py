"""The eligibility rule of DESIGN.md, written once and used by every engine.

A record is eligible for a release to recipient R for purpose P at build time ``as_of`` when it is public
(not followers-only, author not protected), not deleted at ``as_of``, its author's effective consent is
allow at ``as_of`` for every catalog setting covering (R's kind, P, the record's category) - no covering
setting means excluded (fail closed) - and it is inside the retention window of its category.

Every excluded record gets exactly one reason, the first that applies in ``REASONS`` order. Author-level
facts (inactive, minor, protected, consent per category, then pseudonyms) are decided here in Python over the
accounts only (vectorised, one row per account); record-level rules are SQL fragments that the DuckDB
and Spark engines both embed, so both engines apply the same text of the rule.

Assistant interactions have no audience (they are private exchanges governed by their own setting), so
the "public" test applies to posts only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from consentry.consent.catalog import Catalog, Jurisdictions
from consentry.consent.evaluate import account_arrays, evaluate_many
from consentry.consent.policy import Policy
from consentry.consent.rules import ACCOUNT_EXCLUSIONS, code_of, holds_arrays
from consentry.datasets.transforms import pseudonyms
from consentry.errors import IntegrityFailure, InvalidInput

REASONS: tuple[str, ...] = (
    "inactive_account",
    "minor",
    "deleted",
    "not_public",
    "opted_out",
    "outside_retention",
)
"""Exclusion reasons in precedence order; a record's reason code is its index here plus one (0: eligible)."""

ELIGIBLE = 0
BLOCKED_INACTIVE, BLOCKED_MINOR = code_of("inactive_account"), code_of("minor")


def reason_name(code: int) -> str:
    """The name of a non-zero reason code."""
    return REASONS[code - 1]


@dataclass(frozen=True)
class CategorySpec:
    """How one lake folder becomes one release config."""

    name: str
    id_column: str
    author_column: str
    has_audience: bool
    links: tuple[str, ...]
    texts: tuple[str, ...]
    output: tuple[tuple[str, pa.DataType], ...]

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema of the release files of this category."""
        return pa.schema(list(self.output))


TIMESTAMP = pa.timestamp("us", tz="UTC")
SPECS: dict[str, CategorySpec] = {
    "posts": CategorySpec(
        name="posts",
        id_column="post_id",
        author_column="author_id",
        has_audience=True,
        links=("reply_to", "quote_of"),
        texts=("text",),
        output=(
            ("id", pa.int64()),
            ("author", pa.int64()),
            ("created_at", TIMESTAMP),
            ("text", pa.string()),
            ("reply_to", pa.int64()),
            ("quote_of", pa.int64()),
            ("media", pa.string()),
        ),
    ),
    "assistant_interactions": CategorySpec(
        name="assistant_interactions",
        id_column="interaction_id",
        author_column="account_id",
        has_audience=False,
        links=(),
        texts=("prompt", "response"),
        output=(
            ("id", pa.int64()),
            ("author", pa.int64()),
            ("created_at", TIMESTAMP),
            ("prompt", pa.string()),
            ("response", pa.string()),
        ),
    ),
}
RELEASE_CATEGORIES: tuple[str, ...] = tuple(SPECS)
"""Categories a release can hold (one Hugging Face config each)."""


@dataclass(frozen=True)
class Retention:
    """Retention windows in days per category; a category without a window keeps every record (of
    accounts that are active - inactive accounts are excluded before retention applies)."""

    days: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for category, days in self.days.items():
            if category not in SPECS:
                raise InvalidInput(f"no retention for unknown category {category!r}", field="retention")
            if days < 0:
                raise InvalidInput("retention days must not be negative", field=f"retention.{category}")

    def cutoff(self, category: str, as_of: datetime) -> datetime | None:
        """Records created before this time are outside retention (``None``: keep all)."""
        days = self.days.get(category)
        return None if days is None else as_of - timedelta(days=days)

    def describe(self) -> dict[str, int | None]:
        """Days per release category (``None``: keep all)."""
        return {category: self.days.get(category) for category in SPECS}


@dataclass(frozen=True)
class Window:
    """Which records a build considers: created at or before ``as_of``, in ``[since, until)``."""

    as_of: datetime
    since: datetime | None = None
    until: datetime | None = None


# --- SQL shared by the engines ----------------------------------------------------------------------


@dataclass(frozen=True)
class Dialect:
    """How an engine writes a UTC timestamp literal."""

    name: str

    def timestamp(self, at: datetime) -> str:
        """A literal of ``at`` (UTC); Spark sessions run with the UTC time zone."""
        text = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        if self.name == "duckdb":
            return f"TIMESTAMPTZ '{text}+00'"
        return f"TIMESTAMP '{text}'"


DUCKDB = Dialect("duckdb")
SPARK = Dialect("spark")


def reason_sql(
    spec: CategorySpec,
    *,
    record: str,
    author: str,
    as_of: datetime,
    cutoff: datetime | None,
    dialect: Dialect,
) -> str:
    """The reason code of a record (0 eligible), from the lake row ``record`` left-joined to the author
    table ``author``. Null-safe and fail closed: an author missing from the accounts counts as an
    inactive account, an unknown visibility as not public."""
    r, a = record, author
    cases = [
        f"WHEN {a}.account_id IS NULL OR {a}.blocked = {BLOCKED_INACTIVE} THEN 1",
        f"WHEN {a}.blocked = {BLOCKED_MINOR} THEN 2",
        f"WHEN {r}.deleted_at IS NOT NULL AND {r}.deleted_at <= {dialect.timestamp(as_of)} THEN 3",
    ]
    if spec.has_audience:
        cases.append(f"WHEN coalesce({r}.visibility, '') <> 'public' OR coalesce({a}.protected, TRUE) THEN 4")
    cases.append(f"WHEN NOT coalesce({a}.ok_{spec.name}, FALSE) THEN 5")
    if cutoff is not None:
        cases.append(f"WHEN {r}.created_at < {dialect.timestamp(cutoff)} THEN 6")
    return "CAST(CASE " + " ".join(cases) + " ELSE 0 END AS TINYINT)"


def record_code_sql(
    spec: CategorySpec, *, record: str, as_of: datetime, cutoff: datetime | None, dialect: Dialect
) -> str:
    """The record-level part of the rule alone (needs no consent): 3 deleted, 4 not public by its own
    visibility, 6 outside retention, else 0 - the first that applies."""
    r = record
    cases = [f"WHEN {r}.deleted_at IS NOT NULL AND {r}.deleted_at <= {dialect.timestamp(as_of)} THEN 3"]
    if spec.has_audience:
        cases.append(f"WHEN coalesce({r}.visibility, '') <> 'public' THEN 4")
    if cutoff is not None:
        cases.append(f"WHEN {r}.created_at < {dialect.timestamp(cutoff)} THEN 6")
    return "CAST(CASE " + " ".join(cases) + " ELSE 0 END AS TINYINT)"


def combined_reason_sql(spec: CategorySpec, *, facts: str, author: str) -> str:
    """``reason_sql`` evaluated in two steps: the record code from ``record_code_sql`` (column ``code``
    of ``facts``) combined with the author facts of ``author``. Engines compute record codes while the
    consent evaluation runs, then combine; the result equals ``reason_sql`` (tested)."""
    x, a = facts, author
    protected = f" OR coalesce({a}.protected, TRUE)" if spec.has_audience else ""
    return (
        "CAST(CASE "
        f"WHEN {a}.account_id IS NULL OR {a}.blocked = {BLOCKED_INACTIVE} THEN 1 "
        f"WHEN {a}.blocked = {BLOCKED_MINOR} THEN 2 "
        f"WHEN {x}.code = 3 THEN 3 "
        f"WHEN {x}.code = 4{protected} THEN 4 "
        f"WHEN NOT coalesce({a}.ok_{spec.name}, FALSE) THEN 5 "
        f"WHEN {x}.code = 6 THEN 6 "
        "ELSE 0 END AS TINYINT)"
    )


def combine_reasons(
    spec: CategorySpec, *, author_ids: np.ndarray, codes: np.ndarray, authors: pa.Table
) -> np.ndarray:
    """``combined_reason_sql`` over arrays (the DuckDB engine combines in memory): the reason code of
    each record from its author id and record code, given the author facts (tested against the SQL
    forms). Unknown authors count as inactive; a missing fact excludes (null consent: opted out;
    null protected: not public), as in the SQL forms.

    Each author's facts are folded into one small state first, so each record costs one gather of a
    byte and one look-up in a table of (state, record code) -> reason."""
    codes = np.asarray(codes, dtype=np.int8)
    if codes.size and (int(codes.min()) < 0 or int(codes.max()) >= _CODES):
        raise IntegrityFailure(f"record codes must lie in 0..{_CODES - 1}", field="code")
    ids = np.asarray(authors["account_id"].to_numpy(zero_copy_only=False), dtype=np.int64)
    state = _author_states(spec, authors)
    wanted = np.asarray(author_ids, dtype=np.int64)
    per_record = np.full(len(wanted), _UNKNOWN, dtype=np.int8)
    if len(ids) and len(wanted):
        low, high = int(ids.min()), int(ids.max())
        if high - low < 8 * len(ids) + 1024:  # dense ids: one gather through a byte per id
            lookup = np.full(high - low + 1, _UNKNOWN, dtype=np.int8)
            lookup[ids - low] = state
            if int(wanted.min()) >= low and int(wanted.max()) <= high:
                per_record = lookup[wanted - low]
            else:
                inside = (wanted >= low) & (wanted <= high)
                per_record[inside] = lookup[wanted[inside] - low]
        else:
            position = _positions(ids, wanted)
            found = position >= 0
            per_record[found] = state[position[found]]
    reasons: np.ndarray = _reason_table(spec.has_audience)[per_record.astype(np.intp) * _CODES + codes]
    return reasons


_CODES = 8
"""Record codes are below this (``record_code_sql`` gives 0, 3, 4 or 6)."""
_UNKNOWN, _MINOR, _FINE, _PROTECTED, _OPTED_OUT = 1, 2, 3, 1, 2
"""Author states: unknown or inactive, minor, or ``_FINE`` plus the protected and opted-out bits."""


def _author_states(spec: CategorySpec, authors: pa.Table) -> np.ndarray:
    """One state per author row (see ``_reason_table``)."""
    blocked = np.asarray(authors["blocked"].to_numpy(zero_copy_only=False), dtype=np.int8)
    ok = _flag(authors[f"ok_{spec.name}"], missing=False)
    state = np.full(len(blocked), _FINE, dtype=np.int8)
    if spec.has_audience:
        state += _flag(authors["protected"], missing=True).astype(np.int8) * _PROTECTED
    state += (~ok).astype(np.int8) * _OPTED_OUT
    state[blocked == BLOCKED_MINOR] = _MINOR
    state[blocked == BLOCKED_INACTIVE] = _UNKNOWN
    return state


def _flag(column: pa.ChunkedArray, *, missing: bool) -> np.ndarray:
    """A boolean column as NumPy, null as ``missing`` (whichever excludes the record)."""
    filled = pc.fill_null(pc.cast(column, pa.bool_()), missing)
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)


def _reason_table(has_audience: bool) -> np.ndarray:
    """Reason by ``state * _CODES + code``, in the precedence of ``combined_reason_sql``."""
    table = np.zeros((_FINE + _PROTECTED + _OPTED_OUT + 1) * _CODES, dtype=np.int8)
    for state in range(_FINE + _PROTECTED + _OPTED_OUT + 1):
        flags = state - _FINE
        for code in range(_CODES):
            if state in (0, _UNKNOWN):
                reason = 1
            elif state == _MINOR:
                reason = 2
            elif code == 3:
                reason = 3
            elif code == 4 or (has_audience and flags & _PROTECTED):
                reason = 4
            elif flags & _OPTED_OUT:
                reason = 5
            elif code == 6:
                reason = 6
            else:
                reason = 0
            table[state * _CODES + code] = reason
    return table


def _positions(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """For each id in ``wanted``, its position in ``ids`` (-1 when absent)."""
    if not len(ids) or not len(wanted):
        return np.full(len(wanted), -1, dtype=np.int64)
    low, high = int(ids.min()), int(ids.max())
    if high - low < 8 * len(ids) + 1024:  # dense ids: one gather through a lookup array
        lookup = np.full(high - low + 1, -1, dtype=np.int64)
        lookup[ids - low] = np.arange(len(ids), dtype=np.int64)
        inside = (wanted >= low) & (wanted <= high)
        result = np.full(len(wanted), -1, dtype=np.int64)
        result[inside] = lookup[wanted[inside] - low]
        return result
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    pos = np.minimum(np.searchsorted(sorted_ids, wanted), len(ids) - 1)
    return np.where(sorted_ids[pos] == wanted, order[pos], -1)


def eligible_sql(
    spec: CategorySpec,
    *,
    record: str,
    author: str,
    as_of: datetime,
    cutoff: datetime | None,
    dialect: Dialect,
) -> str:
    """The same rule as ``reason_sql(...) = 0``, as a conjunction of simple predicates (for the inner
    join of records to authors) that engines can push into their scans and joins."""
    r, a = record, author
    parts = [
        f"{a}.blocked = 0",
        f"({r}.deleted_at IS NULL OR {r}.deleted_at > {dialect.timestamp(as_of)})",
    ]
    if spec.has_audience:
        parts += [f"{r}.visibility = 'public'", f"NOT coalesce({a}.protected, TRUE)"]
    parts.append(f"coalesce({a}.ok_{spec.name}, FALSE)")
    if cutoff is not None:
        parts.append(f"{r}.created_at >= {dialect.timestamp(cutoff)}")
    return " AND ".join(parts)


def window_sql(record: str, window: Window, dialect: Dialect) -> str:
    """Whether a record (with ``created_at <= as_of`` already applied) lies in the build window."""
    parts = ["TRUE"]
    if window.since is not None:
        parts.append(f"{record}.created_at >= {dialect.timestamp(window.since)}")
    if window.until is not None:
        parts.append(f"{record}.created_at < {dialect.timestamp(window.until)}")
    return " AND ".join(parts)


# --- author facts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Authors:
    """Per account: ``account_id``, ``blocked`` (0, 1 inactive, 2 minor), ``protected`` and one
    ``ok_<category>`` per category (every covering setting allows). ``covering`` names the settings
    each category needs; ``contributes`` marks the accounts that may contribute to some category."""

    table: pa.Table
    covering: dict[str, tuple[str, ...]]
    contributes: np.ndarray


def with_pseudonyms(authors: Authors, secret: bytes) -> pa.Table:
    """The author table plus ``pseudonym`` (null for accounts that cannot contribute)."""
    ids = np.asarray(authors.table["account_id"].to_numpy(zero_copy_only=False), dtype=np.int64)
    names = np.zeros(len(ids), dtype=np.int64)
    names[authors.contributes] = pseudonyms(ids[authors.contributes], secret)
    return authors.table.append_column("pseudonym", pa.array(names, pa.int64(), mask=~authors.contributes))


ACCOUNT_COLUMNS = ("account_id", "created_at", "country", "birth_year", "status", "status_changed_at")


def covering_settings(
    catalog: Catalog, *, kind: str, purpose: str, categories: Sequence[str]
) -> dict[str, tuple[str, ...]]:
    """Per category, the catalog settings that must all allow (empty: nothing is eligible)."""
    return {
        category: tuple(s.key for s in catalog.covering(recipient=kind, purpose=purpose, category=category))
        for category in categories
    }


def with_database_status(accounts: pa.Table, closed: pa.Table) -> pa.Table:
    """The lake's ``accounts`` with the database's newer knowledge of closed accounts laid over them;
    the more restrictive of the two wins.

    ``closed`` (``datasets.snapshot.CLOSED_ACCOUNTS``) lists the accounts the database holds as
    deactivated or deleted. One the lake still lists as active takes the database's status and time;
    where both say closed, the earlier time counts. An account whose subject mapping is gone (deleted)
    has no recoverable choices, so it counts as closed at every moment: its records are excluded rather
    than judged by a default.
    """
    if closed.num_rows == 0:
        return accounts
    position = pc.index_in(accounts["account_id"], value_set=closed["account_id"])
    hit = pc.is_valid(position)
    if not pc.any(hit).as_py():
        return accounts
    index = pc.fill_null(position, 0)
    db_status = pc.take(closed["status"], index)
    db_changed = pc.take(closed["status_changed_at"], index).cast(TIMESTAMP)
    db_changed = pc.if_else(pc.take(closed["mapped"], index), db_changed, pa.scalar(None, TIMESTAMP))
    lake_active = pc.fill_null(pc.equal(accounts["status"], "active"), False)
    lake_changed = accounts["status_changed_at"].cast(TIMESTAMP)
    # a null time means "closed since always" (``author_facts`` treats it so): it wins over any time
    earliest = pc.if_else(
        pc.or_(pc.is_null(lake_changed), pc.is_null(db_changed)),
        pa.scalar(None, TIMESTAMP),
        pc.min_element_wise(lake_changed.cast(pa.int64()), db_changed.cast(pa.int64())).cast(TIMESTAMP),
    )
    changed = pc.if_else(hit, pc.if_else(lake_active, db_changed, earliest), lake_changed)
    status = pc.if_else(pc.and_(hit, lake_active), db_status, accounts["status"])
    accounts = accounts.set_column(accounts.schema.get_field_index("status"), "status", status)
    return accounts.set_column(
        accounts.schema.get_field_index("status_changed_at"), "status_changed_at", changed
    )


def author_facts(
    accounts: pa.Table,
    events: pa.Table,
    *,
    kind: str,
    purpose: str,
    categories: Sequence[str],
    as_of: datetime,
    policies: Sequence[Policy],
    catalog: Catalog,
    jurisdictions: Jurisdictions,
) -> Authors:
    """Decide every author-level part of the rule with the vectorised consent evaluation at ``as_of``.

    ``accounts`` holds the lake's ``accounts/`` columns (``ACCOUNT_COLUMNS`` plus ``protected``);
    ``events`` the ledger's explicit events in ``EVENT_SCHEMA``.
    """
    covering = covering_settings(catalog, kind=kind, purpose=purpose, categories=categories)
    keys = sorted({key for keys in covering.values() for key in keys})
    evaluated = evaluate_many(
        accounts.select(list(ACCOUNT_COLUMNS)),
        events,
        settings=keys,
        at=as_of,
        policies=policies,
        jurisdictions=jurisdictions,
    )
    n = accounts.num_rows
    arrays = account_arrays(accounts, [e.account for _, e in ACCOUNT_EXCLUSIONS if e.account is not None])
    blocked = np.zeros(n, dtype=np.int8)
    for code, exclusion in reversed(ACCOUNT_EXCLUSIONS):  # the first that holds wins
        assert exclusion.account is not None
        blocked[holds_arrays(exclusion.account, arrays, size=n, now=as_of)] = code
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        "account_id": accounts["account_id"],
        "blocked": pa.array(blocked),
        "protected": pc.fill_null(accounts["protected"], True),
    }
    contributes = np.zeros(n, dtype=bool)
    for category in categories:
        ok = np.ones(n, dtype=bool) if covering[category] else np.zeros(n, dtype=bool)
        for key in covering[category]:
            ok &= np.asarray(evaluated[key].to_numpy(zero_copy_only=False), dtype=bool)
        columns[f"ok_{category}"] = pa.array(ok)
        contributes |= ok
    contributes &= blocked == 0
    return Authors(table=pa.table(columns), covering=covering, contributes=contributes)
