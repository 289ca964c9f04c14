"""Conditions: a small expression language with SQL's three-valued logic, and its four readings.

Expressions (``Col``, ``Lit``, ``Param``, ``Now``, ``Year``, ``Sub``, ``Cmp``, ``IsNull``, ``Not``,
``And``, ``Or``, ``Coalesce``) are read as:

* ``evaluate``: one row of Python values (``None`` is null);
* ``evaluate_arrays``: NumPy arrays (values plus a null mask), for millions of rows at once;
* ``to_sql``: an SQL expression, with a dialect for timestamp literals (DuckDB and Spark);
* ``changes_at``: per row, the first instant after t at which the condition may change by time alone.

``negate`` turns a condition into the predicate that holds exactly when it does not (null counting as
false), written as plain comparisons an engine can push into its scans. The rules written in this
language are in ``consentry.consent.rules``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)
NEVER = np.iinfo(np.int64).max
"""``changes_at`` of a row whose condition never changes by time alone."""


def to_micros(at: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime."""
    return (at.astimezone(UTC) - EPOCH) // ONE_MICROSECOND


# --- expressions ------------------------------------------------------------------------------------

Table = Literal["account", "record", "author", "facts"]
Op = Literal["=", "<>", "<", "<=", ">", ">="]


@dataclass(frozen=True)
class Col:
    """A column of one of the rows a rule reads; ``{category}`` in the name is filled in by ``bind``."""

    table: Table
    name: str


@dataclass(frozen=True)
class Lit:
    """A constant (string, integer, boolean)."""

    value: str | int | bool


@dataclass(frozen=True)
class Param:
    """A value given with the evaluation (e.g. the retention cut-off), a timestamp."""

    name: str


@dataclass(frozen=True)
class Now:
    """The time the rule is evaluated at."""


@dataclass(frozen=True)
class Year:
    """The calendar year (UTC) of the evaluation time."""


@dataclass(frozen=True)
class Sub:
    """``left - right`` (integers)."""

    left: Expr
    right: Expr


@dataclass(frozen=True)
class Cmp:
    """A comparison; null on either side gives null."""

    op: Op
    left: Expr
    right: Expr


@dataclass(frozen=True)
class IsNull:
    """Whether a value is null (never null itself)."""

    value: Expr


@dataclass(frozen=True)
class Not:
    """Negation (null stays null)."""

    value: Expr


@dataclass(frozen=True)
class And:
    """Conjunction, SQL three-valued."""

    parts: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    """Disjunction, SQL three-valued."""

    parts: tuple[Expr, ...]


@dataclass(frozen=True)
class Coalesce:
    """The value, or ``default`` where it is null."""

    value: Expr
    default: Lit


Expr = Union[Col, Lit, Param, Now, Year, Sub, Cmp, IsNull, Not, And, Or, Coalesce]  # noqa: UP007


def bind(expr: Expr, **names: str) -> Expr:
    """The expression with ``{name}`` placeholders in column names filled in."""
    if isinstance(expr, Col):
        return Col(expr.table, expr.name.format(**names))
    if isinstance(expr, Sub):
        return Sub(bind(expr.left, **names), bind(expr.right, **names))
    if isinstance(expr, Cmp):
        return Cmp(expr.op, bind(expr.left, **names), bind(expr.right, **names))
    if isinstance(expr, IsNull):
        return IsNull(bind(expr.value, **names))
    if isinstance(expr, Not):
        return Not(bind(expr.value, **names))
    if isinstance(expr, And):
        return And(tuple(bind(p, **names) for p in expr.parts))
    if isinstance(expr, Or):
        return Or(tuple(bind(p, **names) for p in expr.parts))
    if isinstance(expr, Coalesce):
        return Coalesce(bind(expr.value, **names), expr.default)
    return expr


def columns_of(expr: Expr) -> set[tuple[str, str]]:
    """The ``(table, column)`` pairs an expression reads."""
    if isinstance(expr, Col):
        return {(expr.table, expr.name)}
    if isinstance(expr, Sub | Cmp):
        return columns_of(expr.left) | columns_of(expr.right)
    if isinstance(expr, IsNull | Not | Coalesce):
        return columns_of(expr.value)
    if isinstance(expr, And | Or):
        return set().union(*(columns_of(p) for p in expr.parts))
    return set()


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
_NEGATED: dict[str, Op] = {"=": "<>", "<>": "=", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}


# --- reading 1: one row in Python -------------------------------------------------------------------


Row = Mapping[tuple[str, str], Any]


def evaluate(expr: Expr, row: Row, *, now: datetime, params: Mapping[str, Any] | None = None) -> Any:
    """The value of ``expr`` for one row (``row[(table, column)]``, ``None`` for null)."""
    if isinstance(expr, Col):
        return row.get((expr.table, expr.name))
    if isinstance(expr, Lit):
        return expr.value
    if isinstance(expr, Param):
        return (params or {})[expr.name]
    if isinstance(expr, Now):
        return now
    if isinstance(expr, Year):
        return now.astimezone(UTC).year
    if isinstance(expr, Sub):
        left, right = (
            evaluate(expr.left, row, now=now, params=params),
            evaluate(expr.right, row, now=now, params=params),
        )
        return None if left is None or right is None else left - right
    if isinstance(expr, Cmp):
        left, right = (
            evaluate(expr.left, row, now=now, params=params),
            evaluate(expr.right, row, now=now, params=params),
        )
        return None if left is None or right is None else bool(_COMPARE[expr.op](left, right))
    if isinstance(expr, IsNull):
        return evaluate(expr.value, row, now=now, params=params) is None
    if isinstance(expr, Not):
        value = evaluate(expr.value, row, now=now, params=params)
        return None if value is None else not value
    if isinstance(expr, And):
        values = [evaluate(p, row, now=now, params=params) for p in expr.parts]
        if any(v is False for v in values):
            return False
        return None if any(v is None for v in values) else True
    if isinstance(expr, Or):
        values = [evaluate(p, row, now=now, params=params) for p in expr.parts]
        if any(v is True for v in values):
            return True
        return None if any(v is None for v in values) else False
    value = evaluate(expr.value, row, now=now, params=params)
    return expr.default.value if value is None else value


def holds(expr: Expr, row: Row, *, now: datetime, params: Mapping[str, Any] | None = None) -> bool:
    """Whether a condition is true for one row (null is not true)."""
    return evaluate(expr, row, now=now, params=params) is True


# --- reading 2: arrays with NumPy -------------------------------------------------------------------


@dataclass(frozen=True)
class Values:
    """A column of values and where they are null: NumPy (timestamps as int64 microseconds), or an Arrow
    array for strings (compared with Arrow's kernels, never turned into Python objects)."""

    data: Any
    null: np.ndarray


_ARROW_COMPARE = {"=": "equal", "<>": "not_equal", "<": "less", "<=": "less_equal", ">": "greater"}
_ARROW_COMPARE[">="] = "greater_equal"


def _is_arrow(data: Any) -> bool:
    return isinstance(data, pa.Array | pa.ChunkedArray)


def _compare(op: str, left: Any, right: Any) -> np.ndarray:
    if _is_arrow(left) or _is_arrow(right):
        a = left if _is_arrow(left) else pa.scalar(left.item() if isinstance(left, np.ndarray) else left)
        b = right if _is_arrow(right) else pa.scalar(right.item() if isinstance(right, np.ndarray) else right)
        result = pc.fill_null(getattr(pc, _ARROW_COMPARE[op])(a, b), False)
        return np.asarray(result.to_numpy(zero_copy_only=False), dtype=bool)
    return np.asarray(_COMPARE[op](left, right), dtype=bool)


Arrays = Mapping[tuple[str, str], Values]


def evaluate_arrays(
    expr: Expr, arrays: Arrays, *, size: int, now: datetime, params: Mapping[str, Any] | None = None
) -> Values:
    """The value of ``expr`` for every row at once; timestamps are int64 microseconds since the epoch."""
    no_null = np.zeros(size, dtype=bool)

    def go(e: Expr) -> Values:
        if isinstance(e, Col):
            return arrays[(e.table, e.name)]
        if isinstance(e, Lit):
            return Values(np.asarray(e.value), no_null)
        if isinstance(e, Param):
            value = (params or {})[e.name]
            return Values(np.full(size, to_micros(value) if isinstance(value, datetime) else value), no_null)
        if isinstance(e, Now):
            return Values(np.full(size, to_micros(now), dtype=np.int64), no_null)
        if isinstance(e, Year):
            return Values(np.full(size, now.astimezone(UTC).year, dtype=np.int64), no_null)
        if isinstance(e, Sub):
            left, right = go(e.left), go(e.right)
            return Values(left.data.astype(np.int64) - right.data.astype(np.int64), left.null | right.null)
        if isinstance(e, Cmp):
            left, right = go(e.left), go(e.right)
            null = left.null | right.null
            return Values(_compare(e.op, left.data, right.data) & ~null, null)
        if isinstance(e, IsNull):
            return Values(go(e.value).null.copy(), no_null)
        if isinstance(e, Not):
            value = go(e.value)
            return Values(~value.data.astype(bool) & ~value.null, value.null)
        if isinstance(e, And):
            parts = [go(p) for p in e.parts]
            false = np.zeros(size, dtype=bool)
            null = np.zeros(size, dtype=bool)
            for part in parts:
                false |= ~part.data.astype(bool) & ~part.null
                null |= part.null
            return Values(~false & ~null, null & ~false)
        if isinstance(e, Or):
            parts = [go(p) for p in e.parts]
            true = np.zeros(size, dtype=bool)
            null = np.zeros(size, dtype=bool)
            for part in parts:
                true |= part.data.astype(bool) & ~part.null
                null |= part.null
            return Values(true, null & ~true)
        value = go(e.value)
        if _is_arrow(value.data):
            filled = pc.fill_null(value.data, e.default.value)
            if pa.types.is_boolean(filled.type):
                filled = np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)
            return Values(filled, no_null)
        return Values(np.where(value.null, e.default.value, value.data), no_null)

    return go(expr)


def arrays_of(table: pa.Table, side: Table, names: Iterable[str]) -> dict[tuple[str, str], Values]:
    """Columns of an Arrow table as ``evaluate_arrays`` reads them: timestamps as int64 microseconds,
    integers as int64, booleans as NumPy, strings as Arrow arrays (nulls in the masks)."""
    arrays: dict[tuple[str, str], Values] = {}
    for name in names:
        column = table.column(name)
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        null = np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        data: Any
        if pa.types.is_timestamp(column.type):
            ints = pc.cast(column, pa.timestamp("us", tz="UTC")).cast(pa.int64())
            data = np.asarray(pc.fill_null(ints, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
        elif pa.types.is_integer(column.type):
            data = np.asarray(pc.fill_null(pc.cast(column, pa.int64()), 0).to_numpy(zero_copy_only=False))
        elif pa.types.is_boolean(column.type):
            data = np.asarray(pc.fill_null(column, False).to_numpy(zero_copy_only=False), dtype=bool)
        else:
            data = column
        arrays[(side, name)] = Values(data, null)
    return arrays


def holds_arrays(
    expr: Expr, arrays: Arrays, *, size: int, now: datetime, params: Mapping[str, Any] | None = None
) -> np.ndarray:
    """Per row, whether a condition is true (null is not true)."""
    value = evaluate_arrays(expr, arrays, size=size, now=now, params=params)
    result: np.ndarray = value.data.astype(bool) & ~value.null
    return result


def changes_at(expr: Expr, arrays: Arrays, *, size: int, now: datetime) -> np.ndarray:
    """Per row, the first instant (int64 microseconds) after ``now`` at which the condition's value may
    change by the passing of time alone (``NEVER`` if it cannot): a timestamp column compared with the
    time, or the next 1 January where the calendar year counts. A conjunction (disjunction) that a
    time-independent part already makes false (true) never changes."""
    t = to_micros(now)
    next_year = to_micros(datetime(now.astimezone(UTC).year + 1, 1, 1, tzinfo=UTC))

    def timed(e: Expr) -> bool:
        if isinstance(e, Now | Year):
            return True
        if isinstance(e, Sub | Cmp):
            return timed(e.left) or timed(e.right)
        if isinstance(e, IsNull | Not | Coalesce):
            return timed(e.value)
        if isinstance(e, And | Or):
            return any(timed(p) for p in e.parts)
        return False

    def go(e: Expr) -> np.ndarray:
        never = np.full(size, NEVER, dtype=np.int64)
        if not timed(e):
            return never
        if isinstance(e, Year):
            return np.full(size, next_year, dtype=np.int64)
        if isinstance(e, Cmp) and isinstance(e.right, Now) and not timed(e.left):
            # ``x op t`` flips where t reaches x (<=, >) or passes it (<, >=)
            left = evaluate_arrays(e.left, arrays, size=size, now=now)
            moment = left.data.astype(np.int64) + (1 if e.op in ("<", ">=") else 0)
            flips: np.ndarray = np.where(~left.null & (moment > t), moment, never)
            return flips
        if isinstance(e, Cmp | Sub):
            earliest: np.ndarray = np.minimum(go(e.left), go(e.right))
            return earliest
        if isinstance(e, IsNull | Not | Coalesce):
            return go(e.value)
        assert isinstance(e, And | Or)
        result = never
        settled = np.zeros(size, dtype=bool)
        for part in e.parts:
            if timed(part):
                result = np.minimum(result, go(part))
            else:
                truth = evaluate_arrays(part, arrays, size=size, now=now)
                true = truth.data.astype(bool) & ~truth.null
                false = ~truth.data.astype(bool) & ~truth.null
                settled |= true if isinstance(e, Or) else false
        bound: np.ndarray = np.where(settled, never, result)
        return bound

    return go(expr)


# --- reading 3: SQL ---------------------------------------------------------------------------------


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


def to_sql(
    expr: Expr,
    *,
    aliases: Mapping[str, str],
    now: datetime,
    dialect: Dialect,
    params: Mapping[str, Any] | None = None,
) -> str:
    """The expression in SQL; ``aliases`` names the relation of each table (``record`` -> ``r``)."""

    def go(e: Expr) -> str:
        if isinstance(e, Col):
            return f"{aliases[e.table]}.{e.name}"
        if isinstance(e, Lit):
            return _literal(e.value)
        if isinstance(e, Param):
            value = (params or {})[e.name]
            return dialect.timestamp(value) if isinstance(value, datetime) else _literal(value)
        if isinstance(e, Now):
            return dialect.timestamp(now)
        if isinstance(e, Year):
            return str(now.astimezone(UTC).year)
        if isinstance(e, Sub):
            return f"({go(e.left)} - {go(e.right)})"
        if isinstance(e, Cmp):
            return f"{go(e.left)} {e.op} {go(e.right)}"
        if isinstance(e, IsNull):
            return f"{_atom(e.value, go)} IS NULL"
        if isinstance(e, Not) and isinstance(e.value, IsNull):
            return f"{_atom(e.value.value, go)} IS NOT NULL"
        if isinstance(e, Not):
            return f"NOT {go(e.value)}" if isinstance(e.value, Col | Coalesce) else f"NOT ({go(e.value)})"
        if isinstance(e, And):
            return " AND ".join(_group(p, go) for p in e.parts)
        if isinstance(e, Or):
            return " OR ".join(_group(p, go) for p in e.parts)
        return f"coalesce({go(e.value)}, {_literal(e.default.value)})"

    return go(expr)


def _atom(expr: Expr, go: Callable[[Expr], str]) -> str:
    text = go(expr)
    return text if isinstance(expr, Col | Lit | Param | Now | Year | Coalesce | Sub) else f"({text})"


def _group(expr: Expr, go: Callable[[Expr], str]) -> str:
    text = go(expr)
    return f"({text})" if isinstance(expr, And | Or) else text


def _literal(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def negate(expr: Expr) -> Expr:
    """``NOT expr`` as plain comparisons engines can push into their scans (De Morgan, inverted
    comparisons). It equals ``NOT expr`` except that it may be null where ``NOT expr`` is false, which a
    filter treats the same (``coalesce(v, '') <> 'public'`` becomes ``v = 'public'``)."""
    if isinstance(expr, Or):
        return And(tuple(negate(p) for p in expr.parts))
    if isinstance(expr, And):
        return Or(tuple(negate(p) for p in expr.parts))
    if isinstance(expr, Not):
        return expr.value
    if isinstance(expr, Cmp):
        left, right = expr.left, expr.right
        if (
            isinstance(left, Coalesce)
            and isinstance(right, Lit)
            and _COMPARE[expr.op](left.default.value, right.value)  # a null counts as true
        ):
            return Cmp(_NEGATED[expr.op], left.value, right)
        return Cmp(_NEGATED[expr.op], expr.left, expr.right)
    return Not(expr)
