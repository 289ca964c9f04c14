"""The eligibility rule of DESIGN.md, written once and used by every engine.

A record is eligible for a release to recipient R for purpose P at build time ``as_of`` when it is public
(not followers-only, author not protected), not deleted at ``as_of``, its author's effective consent is
allow at ``as_of`` for every catalog setting covering (R's kind, P, the record's category) - no covering
setting means excluded (fail closed) - and it is inside the retention window of its category.

Every excluded record gets exactly one reason, the first that applies in ``REASONS`` order. The reasons
and their conditions are one table, ``consentry.consent.rules.EXCLUSIONS``; every form here is derived
from it: ``reason_of`` (Python, one record), ``reason_sql``, ``record_code_sql`` + ``combined_reason_sql``
and ``eligible_sql`` (SQL for DuckDB and Spark), ``combine_reasons`` (NumPy). Author-level facts
(inactive, minor, protected, consent per category, then pseudonyms) are decided here over the accounts
only (vectorised, one row per account).

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

from consentry.consent import rules
from consentry.consent.catalog import Catalog, Jurisdictions
from consentry.consent.evaluate import account_arrays, evaluate_many
from consentry.consent.policy import Policy
from consentry.consent.rules import (
    ACCOUNT_EXCLUSIONS,
    And,
    Cmp,
    Col,
    Expr,
    Lit,
    Or,
    Part,
    arrays_of,
    code_of,
    columns_of,
    condition,
    exclusion_parts,
    holds,
    holds_arrays,
    negate,
    to_sql,
)
from consentry.consent.rules import (
    DUCKDB as DUCKDB,
)
from consentry.consent.rules import (
    REASONS as REASONS,
)
from consentry.consent.rules import (
    SPARK as SPARK,
)
from consentry.consent.rules import (
    Dialect as Dialect,
)
from consentry.datasets.transforms import pseudonyms
from consentry.errors import IntegrityFailure, InvalidInput

ELIGIBLE = rules.ELIGIBLE
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


def _parts(spec: CategorySpec, cutoff: datetime | None) -> tuple[Part, ...]:
    return exclusion_parts(category=spec.name, has_audience=spec.has_audience, cutoff=cutoff)


def reason_of(
    spec: CategorySpec,
    *,
    record: Mapping[str, object],
    author: Mapping[str, object] | None,
    as_of: datetime,
    cutoff: datetime | None,
) -> int:
    """The reason code of one record (0 eligible) from its lake columns and its author's facts (``None``:
    the author is missing from the accounts): ``rules.EXCLUSIONS`` read in Python."""
    row: dict[tuple[str, str], object] = {("record", k): v for k, v in record.items()}
    row.update({("author", k): v for k, v in (author or {}).items()})
    for part in _parts(spec, cutoff):
        if holds(condition(part), row, now=as_of, params={"cutoff": cutoff}):
            return part.code
    return ELIGIBLE


def _case(whens: list[tuple[str, int]]) -> str:
    cases = " ".join(f"WHEN {when} THEN {code}" for when, code in whens)
    return f"CAST(CASE {cases} ELSE 0 END AS TINYINT)"


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
    table ``author``: ``rules.EXCLUSIONS`` in SQL. Null-safe and fail closed: an author missing from the
    accounts counts as an inactive account, an unknown visibility as not public."""
    aliases = {"record": record, "author": author}
    params = {"cutoff": cutoff}
    whens = [
        (to_sql(condition(part), aliases=aliases, now=as_of, dialect=dialect, params=params), part.code)
        for part in _parts(spec, cutoff)
    ]
    return _case(whens)


def record_code_sql(
    spec: CategorySpec, *, record: str, as_of: datetime, cutoff: datetime | None, dialect: Dialect
) -> str:
    """The record-level part of the rule alone (needs no consent): the code of the first exclusion whose
    record condition holds (3 deleted, 4 not public by its own visibility, 6 outside retention), else 0."""
    aliases = {"record": record}
    params = {"cutoff": cutoff}
    whens = [
        (to_sql(part.record, aliases=aliases, now=as_of, dialect=dialect, params=params), part.code)
        for part in _parts(spec, cutoff)
        if part.record is not None
    ]
    return _case(whens)


def _with_code(part: Part, code: Expr) -> Expr:
    """An exclusion's condition with its record condition replaced by ``code = <its code>``: the first
    record condition that holds is the record code, so this is the same test once earlier reasons
    failed."""
    pieces = [p for p in (part.author, part.record and Cmp("=", code, Lit(part.code))) if p is not None]
    return pieces[0] if len(pieces) == 1 else Or(tuple(pieces))


_ANY_CUTOFF = datetime(1970, 1, 1, tzinfo=UTC)
"""Record codes already say whether a retention window applied, so the combination includes its reason."""


def combined_reason_sql(spec: CategorySpec, *, facts: str, author: str) -> str:
    """``reason_sql`` evaluated in two steps: the record code from ``record_code_sql`` (column ``code``
    of ``facts``) combined with the author facts of ``author``. Engines compute record codes while the
    consent evaluation runs, then combine; the result equals ``reason_sql`` (tested)."""
    aliases = {"author": author, "facts": facts}
    code = Col("facts", "code")
    whens = [
        (to_sql(_with_code(part, code), aliases=aliases, now=_ANY_CUTOFF, dialect=DUCKDB), part.code)
        for part in _parts(spec, _ANY_CUTOFF)
    ]
    return _case(whens)


def combine_reasons(
    spec: CategorySpec, *, author_ids: np.ndarray, codes: np.ndarray, authors: pa.Table
) -> np.ndarray:
    """``combined_reason_sql`` over arrays (the DuckDB engine combines in memory): the reason code of
    each record from its author id and record code, given the author facts (tested against the SQL
    forms). Unknown authors are read as an author row of nulls (inactive); a missing fact excludes.

    Each author's facts are folded into one small state first (a bit per exclusion with an author
    condition), so each record costs one gather of a byte and one look-up in a table of (state, record
    code) -> reason."""
    codes = np.asarray(codes, dtype=np.int8)
    if codes.size and (int(codes.min()) < 0 or int(codes.max()) >= _CODES):
        raise IntegrityFailure(f"record codes must lie in 0..{_CODES - 1}", field="code")
    parts = _parts(spec, _ANY_CUTOFF)
    ids = np.asarray(authors["account_id"].to_numpy(zero_copy_only=False), dtype=np.int64)
    state = _author_states(parts, authors)
    unknown = int(_author_states(parts, _nulls(authors))[0])
    wanted = np.asarray(author_ids, dtype=np.int64)
    per_record = np.full(len(wanted), unknown, dtype=np.int8)
    if len(ids) and len(wanted):
        low, high = int(ids.min()), int(ids.max())
        if high - low < 8 * len(ids) + 1024:  # dense ids: one gather through a byte per id
            lookup = np.full(high - low + 1, unknown, dtype=np.int8)
            lookup[ids - low] = state
            if int(wanted.min()) >= low and int(wanted.max()) <= high:
                per_record = lookup[wanted - low]
            else:
                inside = (wanted >= low) & (wanted <= high)
                per_record[inside] = lookup[wanted[inside] - low]
        else:
            position = positions(ids, wanted)
            found = position >= 0
            per_record[found] = state[position[found]]
    reasons: np.ndarray = _reason_table(parts)[per_record.astype(np.intp) * _CODES + codes]
    return reasons


_CODES = 8
"""Record codes are below this (``record_code_sql`` gives 0 or the code of a record condition)."""


def _nulls(authors: pa.Table) -> pa.Table:
    """One author row of nulls: how an author missing from the accounts reads."""
    return pa.table({name: pa.nulls(1, authors.schema.field(name).type) for name in authors.column_names})


def _author_states(parts: tuple[Part, ...], authors: pa.Table) -> np.ndarray:
    """One state per author row: bit ``i`` set when the ``i``-th author condition of ``parts`` holds."""
    conditions = [part.author for part in parts if part.author is not None]
    names = sorted({name for c in conditions for side, name in columns_of(c) if side == "author"})
    arrays = arrays_of(authors, "author", names)
    n = authors.num_rows
    state = np.zeros(n, dtype=np.int8)
    for bit, author_condition in enumerate(conditions):
        state |= holds_arrays(author_condition, arrays, size=n, now=_ANY_CUTOFF).astype(np.int8) << bit
    return state


def _reason_table(parts: tuple[Part, ...]) -> np.ndarray:
    """Reason by ``state * _CODES + code``: the first part whose author bit is set or whose record code
    it is, in the order of ``rules.EXCLUSIONS``."""
    bits: dict[int, int] = {}
    for part in parts:
        if part.author is not None:
            bits[part.code] = 1 << len(bits)
    table = np.zeros((1 << len(bits)) * _CODES, dtype=np.int8)
    for state in range(1 << len(bits)):
        for code in range(_CODES):
            for part in parts:
                if (part.record is not None and code == part.code) or state & bits.get(part.code, 0):
                    table[state * _CODES + code] = part.code
                    break
    return table


def positions(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
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
    join of records to authors) that engines can push into their scans and joins: ``blocked = 0`` for
    the exclusions decided per author (the fact holds the first one's code), and the negation of every
    other exclusion (``rules.negate``)."""
    aliases = {"record": record, "author": author}
    params = {"cutoff": cutoff}
    predicates: list[str] = []
    parts = _parts(spec, cutoff)
    if any(part.account for part in parts):  # none of the account exclusions: one test of the fact
        predicates.append(
            to_sql(
                Cmp("=", Col("author", "blocked"), Lit(ELIGIBLE)), aliases=aliases, now=as_of, dialect=dialect
            )
        )
    for part in parts:
        if part.account:
            continue
        negated = negate(condition(part))
        for piece in negated.parts if isinstance(negated, And) else (negated,):
            text = to_sql(piece, aliases=aliases, now=as_of, dialect=dialect, params=params)
            predicates.append(f"({text})" if isinstance(piece, Or) else text)
    return " AND ".join(predicates)


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
