"""Liquidated damages: breach windows over minute buckets, amounts, and statement rendering.

The rule (DESIGN.md): a breach window is ``[s, s + 24h)`` where ``s`` is a minute in which the subject was
served posts and the window holds more than ``threshold`` posts. A statement takes the earliest breach
window, then the earliest one starting at or after its end, and so on; windows never overlap. Each owes
``rate x posts / 1,000,000``: pro rata (rounded half up to the cent) by default, or ``rate`` per started
million. Amounts are integer cents.

The search is vectorised (NumPy, no loop over minutes). Buckets are sorted by (subject, minute).

1. Exact pruning: minutes are binned per subject by 1440; a window starting in bin ``d`` lies within
   bins ``d`` and ``d + 1``, so only bins next to a pair holding more than the threshold are kept.
2. Window sums: for bucket ``i``, ``ends[i]`` is the first bucket at or after ``minute[i] + 1440`` and
   the window holds ``C[ends[i]] - C[i]`` posts (``C`` the cumulative sum), computed on a dense minute
   grid (prefix sums and one gather) or by binary search, chunk by chunk.
3. The greedy chain jumps from window to window (``next qualifying bucket at or after ends[i]``, a
   binary search among the qualifying buckets) for all subjects at once: the Python loop runs once per
   window "generation", never per minute.
4. Per-hour evidence: prefix sums at the 25 hour boundaries of each window.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np
import numpy.typing as npt

from consentry.config import DAMAGES_RATE_CENTS, DAMAGES_THRESHOLD_POSTS
from consentry.errors import InvalidInput
from consentry.metering.schemas import Statement

WINDOW_MINUTES = 1440
MILLION = 1_000_000
MAX_PERIOD = timedelta(days=366)
Rounding = Literal["pro_rata", "per_started_million"]
Int64s = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Terms:
    """The damages clause: threshold (posts per 24 h), rate (cents per million posts), rounding."""

    threshold: int = DAMAGES_THRESHOLD_POSTS
    rate_cents: int = DAMAGES_RATE_CENTS
    rounding: Rounding = "pro_rata"

    def __post_init__(self) -> None:
        for name in ("threshold", "rate_cents"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInput(f"{name} must be a non-negative whole number", field=name)
        if self.rounding not in ("pro_rata", "per_started_million"):
            raise InvalidInput("rounding must be 'pro_rata' or 'per_started_million'", field="rounding")


def amount_cents(posts: int, terms: Terms) -> int:
    """What a window of ``posts`` posts owes, in cents."""
    if terms.rounding == "per_started_million":
        return terms.rate_cents * (-(-posts // MILLION))
    return (terms.rate_cents * posts * 2 + MILLION) // (2 * MILLION)


def format_usd(cents: int) -> str:
    """``1234567`` -> ``'12,345.67'``."""
    return f"{cents // 100:,}.{cents % 100:02d}"


def check_period(start: datetime, end: datetime) -> None:
    """A statement period: timezone-aware, ``start < end``, at most 366 days."""
    for name, value in (("from", start), ("to", end)):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidInput(f"'{name}' must be timezone-aware (UTC)", field=name)
    if end <= start:
        raise InvalidInput("'to' must be after 'from'", field="to")
    if end - start > MAX_PERIOD:
        raise InvalidInput("a statement covers at most a year (366 days); split the period", field="to")


def epoch_minute(at: datetime) -> int:
    """Minutes since the epoch of an aware datetime (floored)."""
    return int(at.timestamp() // 60)


def from_minute(minute: int) -> datetime:
    """The UTC datetime of an epoch minute."""
    return datetime.fromtimestamp(minute * 60, tz=UTC)


# --- windows -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Windows:
    """Breach windows of many subjects: parallel arrays sorted by (group, start)."""

    group: Int64s
    start: Int64s
    """Epoch minute where each window starts."""
    posts: Int64s
    first: Int64s
    """Index of the window's first bucket in the (cleaned) input."""
    stop: Int64s
    """Index one past the window's last bucket."""

    def __len__(self) -> int:
        return len(self.start)


@dataclass(frozen=True)
class Buckets:
    """Cleaned, sorted minute buckets: (group, minute) unique, posts > 0."""

    group: Int64s
    minute: Int64s
    posts: Int64s
    requests: Int64s


def prepare(
    group: npt.ArrayLike, minute: npt.ArrayLike, posts: npt.ArrayLike, requests: npt.ArrayLike | None = None
) -> Buckets:
    """Sort buckets by (group, minute), merge duplicates and drop empty minutes."""
    g = np.asarray(group, dtype=np.int64)
    m = np.asarray(minute, dtype=np.int64)
    p = np.asarray(posts, dtype=np.int64)
    r = np.zeros_like(p) if requests is None else np.asarray(requests, dtype=np.int64)
    if not (g.shape == m.shape == p.shape == r.shape) or g.ndim != 1:
        raise InvalidInput(
            "group, minute and posts must be one-dimensional and of equal length", field="posts"
        )
    if p.size and int(p.min()) < 0:
        raise InvalidInput("post counts must not be negative", field="posts")
    keep = p > 0
    if not keep.all():
        g, m, p, r = g[keep], m[keep], p[keep], r[keep]
    if g.size > 1:
        step_g = g[1:] - g[:-1]
        later = m[1:] > m[:-1]
        if not (bool(np.all(step_g >= 0)) and bool(np.all((step_g > 0) | later | (m[1:] == m[:-1])))):
            order = np.lexsort((m, g))
            g, m, p, r = g[order], m[order], p[order], r[order]
            step_g = g[1:] - g[:-1]
            later = m[1:] > m[:-1]
        new = np.ones(g.size, dtype=bool)
        new[1:] = (step_g != 0) | later
        if not new.all():  # merge rows of the same minute (several routes or clients)
            index = np.flatnonzero(new)
            g, m = g[index], m[index]
            p, r = np.add.reduceat(p, index), np.add.reduceat(r, index)
    return Buckets(group=g, minute=m, posts=p, requests=r)


DENSE_CELLS = 1 << 20
DENSE_RATIO = 4
PRUNE_GATHER = 0.75
"""Pruned buckets are dropped (a gather of every array) only when fewer than this share remain."""


def _group_starts(group: Int64s) -> Int64s:
    return np.flatnonzero(np.r_[True, group[1:] != group[:-1]]).astype(np.int64)


def _prune(buckets: Buckets, starts: Int64s, threshold: int) -> npt.NDArray[np.bool_]:
    """Which buckets can matter: exact pruning before the window search.

    Minutes are binned by 1440 per group. A window starting in bin ``d`` lies within bins ``d`` and
    ``d + 1``, so it can only hold more than ``threshold`` posts if those two bins do; and it only
    needs the buckets of those two bins. Buckets of other bins can neither start nor fill a breach.
    """
    m, p = buckets.minute, buckets.posts
    cell = m - int(m.min())
    cell //= WINDOW_MINUTES
    width = int(cell.max()) + 2
    rank = np.zeros(m.size, dtype=np.int64)
    rank[starts[1:]] = width
    np.cumsum(rank, out=rank)
    cell += rank  # group * width + bin, non-decreasing because buckets are sorted
    first = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
    counts = np.diff(np.r_[first, m.size])
    bins = np.zeros(starts.size * width, dtype=np.int64)
    bins[cell[first]] = np.add.reduceat(p, first)
    bins2d = bins.reshape(starts.size, width)
    hot = (bins2d[:, :-1] + bins2d[:, 1:]) > threshold
    needed = np.zeros((starts.size, width), dtype=bool)
    needed[:, :-1] |= hot
    needed[:, 1:] |= hot
    return np.repeat(needed.ravel()[cell[first]], counts)


def _window_sums(minute: Int64s, posts: Int64s, starts: Int64s) -> tuple[Int64s, Int64s]:
    """For each bucket ``i``: ``ends[i]``, the first bucket at or after ``minute[i] + 1440`` (or its
    group's end), and ``sums[i]``, the posts of buckets ``i .. ends[i] - 1``.

    Groups are processed in chunks laid out on a dense minute grid (prefix sums over the grid, one
    gather per bucket) when the buckets are dense enough, and with a binary search otherwise.
    """
    n = minute.size
    ends = np.empty(n, dtype=np.int64)
    sums = np.empty(n, dtype=np.int64)
    stops = np.r_[starts[1:], n]
    base = int(minute.min())
    span = int(minute.max()) - base + WINDOW_MINUTES + 1
    rows_per_chunk = max(1, DENSE_CELLS // span)
    for chunk in range(0, starts.size, rows_per_chunk):
        last = min(chunk + rows_per_chunk, starts.size) - 1
        a, b = int(starts[chunk]), int(stops[last])
        row = np.zeros(b - a, dtype=np.int64)
        row[starts[chunk + 1 : last + 1] - a] = 1
        np.cumsum(row, out=row)
        flat = row * span + (minute[a:b] - base)
        target = flat + WINDOW_MINUTES
        cells = (last - chunk + 1) * span
        if (b - a) * DENSE_RATIO >= cells:
            prefix = np.zeros(cells + 1, dtype=np.int64)
            prefix[flat + 1] = posts[a:b]
            np.cumsum(prefix, out=prefix)
            count = np.zeros(cells + 1, dtype=np.int32)
            count[flat + 1] = 1
            np.cumsum(count, out=count)
            sums[a:b] = prefix[target] - prefix[flat]
            ends[a:b] = a + count[target]
        else:
            cumulative = np.zeros(b - a + 1, dtype=np.int64)
            np.cumsum(posts[a:b], out=cumulative[1:])
            local = np.searchsorted(flat, target, side="left")
            sums[a:b] = cumulative[local] - cumulative[:-1]
            ends[a:b] = a + local
    return ends, sums


def find_windows(buckets: Buckets, *, threshold: int) -> Windows:
    """The greedy, non-overlapping breach windows of every group (see the module docstring)."""
    empty = np.zeros(0, dtype=np.int64)
    if buckets.group.size == 0:
        return Windows(empty, empty, empty, empty, empty)
    keep = _prune(buckets, _group_starts(buckets.group), threshold)
    index: Int64s | None = None
    g, m, p = buckets.group, buckets.minute, buckets.posts
    kept = int(np.count_nonzero(keep))
    if kept == 0:
        return Windows(empty, empty, empty, empty, empty)
    if kept < PRUNE_GATHER * keep.size:  # pruning is exact: keeping a few idle buckets changes nothing
        index = np.flatnonzero(keep).astype(np.int64)
        g, m, p = g[index], m[index], p[index]
    local_starts = _group_starts(g)
    n = int(g.size)
    ends, sums = _window_sums(m, p, local_starts)
    qualifying = np.flatnonzero(sums > threshold)

    def next_q(at: Int64s) -> Int64s:
        """The first qualifying bucket at or after each position (n when none)."""
        position = np.searchsorted(qualifying, at, side="left")
        return np.where(position < qualifying.size, qualifying[np.minimum(position, qualifying.size - 1)], n)

    if qualifying.size == 0:
        return Windows(empty, empty, empty, empty, empty)
    # the first window of each group: its first qualifying bucket, if that is still in the group
    current = next_q(local_starts)
    valid = current < n
    current = current[valid]
    current = current[g[current] == g[local_starts[valid]]]
    found: list[Int64s] = []
    while current.size:
        found.append(current)
        following = next_q(ends[current])
        valid = following < n
        following, origin = following[valid], current[valid]
        current = following[g[following] == g[origin]]
    if not found:
        return Windows(empty, empty, empty, empty, empty)
    first = np.sort(np.concatenate(found))
    stop = ends[first]
    if index is None:
        original_first, original_stop = first, stop
    else:
        original_first, original_stop = index[first], index[stop - 1] + 1
    return Windows(
        group=g[first], start=m[first], posts=sums[first], first=original_first, stop=original_stop
    )


def hourly_evidence(buckets: Buckets, windows: Windows) -> tuple[Int64s, Int64s]:
    """Posts and requests per hour of every window: two arrays of shape (len(windows), 24).

    Hour ``k`` of a window starting at ``s`` covers ``[s + k h, s + (k + 1) h)``. Computed from prefix
    sums at the 25 hour boundaries of each window (a binary search per boundary, not per bucket).
    """
    count = len(windows)
    if count == 0:
        shape = np.zeros((0, 24), dtype=np.int64)
        return shape, shape.copy()
    g, m = buckets.group, buckets.minute
    base = int(m.min())
    span = int(m.max()) - base + WINDOW_MINUTES + 1
    rank = np.zeros(m.size, dtype=np.int64)
    rank[_group_starts(g)[1:]] = span
    np.cumsum(rank, out=rank)
    key = m - base
    key += rank
    starts = key[windows.first]
    bounds = starts[:, None] + np.arange(0, WINDOW_MINUTES + 1, 60, dtype=np.int64)[None, :]
    position = np.searchsorted(key, bounds.ravel(), side="left").reshape(count, 25)

    def per_hour(values: Int64s) -> Int64s:
        cumulative = np.zeros(values.size + 1, dtype=np.int64)
        np.cumsum(values, out=cumulative[1:])
        at = cumulative[position]
        return np.asarray(at[:, 1:] - at[:, :-1], dtype=np.int64)

    posts = per_hour(buckets.posts)
    requests = per_hour(buckets.requests) if buckets.requests.any() else np.zeros_like(posts)
    return posts, requests


def amounts(posts: Int64s, terms: Terms) -> list[int]:
    """Amounts in cents for an array of window totals (exact integer arithmetic)."""
    return [amount_cents(int(value), terms) for value in posts]


def amounts_array(posts: Int64s, terms: Terms) -> Int64s:
    """Vectorised ``amount_cents`` (exact; falls back to Python integers near int64 overflow)."""
    if posts.size and int(posts.max()) > (2**62) // max(1, 2 * terms.rate_cents):
        return np.array(amounts(posts, terms), dtype=np.int64)
    if terms.rounding == "per_started_million":
        return np.asarray(terms.rate_cents * (-(-posts // MILLION)), dtype=np.int64)
    return np.asarray((terms.rate_cents * posts * 2 + MILLION) // (2 * MILLION), dtype=np.int64)


@dataclass(frozen=True)
class BatchStatement:
    """Statements of many subjects at once: windows, amounts and per-hour evidence as arrays."""

    windows: Windows
    amount_cents: Int64s
    hour_posts: Int64s
    hour_requests: Int64s

    def totals(self) -> dict[int, int]:
        """Total amount in cents per group."""
        result: dict[int, int] = {}
        for group, amount in zip(self.windows.group.tolist(), self.amount_cents.tolist(), strict=True):
            result[group] = result.get(group, 0) + amount
        return result


def batch_statements(buckets: Buckets, terms: Terms) -> BatchStatement:
    """Breach windows, amounts and evidence of every group in ``buckets``."""
    windows = find_windows(buckets, threshold=terms.threshold)
    hour_posts, hour_requests = hourly_evidence(buckets, windows)
    return BatchStatement(windows, amounts_array(windows.posts, terms), hour_posts, hour_requests)


# --- rendering -----------------------------------------------------------------------------------------

_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Damages statement: {{ s.organisation }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
td,th{border:1px solid #bbb;padding:.2rem .5rem;text-align:right}
th:first-child,td:first-child{text-align:left}
.total{font-weight:bold}
</style></head><body>
<h1>Statement of liquidated damages</h1>
<p><b>Organisation:</b> {{ s.organisation }} ({{ s.subject }})<br>
<b>Period:</b> {{ s.period_from.isoformat() }} to {{ s.period_to.isoformat() }}<br>
<b>Terms:</b> more than {{ "{:,}".format(s.terms.threshold) }} posts in a 24-hour period owes
USD {{ usd(s.terms.rate_cents) }} per 1,000,000 posts ({{ s.terms.rounding.replace("_", " ") }})<br>
<b>Posts served in the period:</b> {{ "{:,}".format(s.posts_in_period) }}<br>
<b>Generated:</b> {{ s.generated_at.isoformat() }}</p>
<p>{{ s.method }}</p>
<table><tr><th>Window</th><th>From</th><th>To</th><th>Posts</th><th>Amount (USD)</th></tr>
{% for w in s.windows %}<tr><td>{{ w.number }}</td><td>{{ w.start.isoformat() }}</td>
<td>{{ w.end.isoformat() }}</td><td>{{ "{:,}".format(w.posts) }}</td><td>{{ w.amount_usd }}</td></tr>
{% endfor %}<tr class="total"><td colspan="3">Total</td><td>{{ "{:,}".format(s.posts_in_windows) }}</td>
<td>{{ s.total_amount_usd }}</td></tr></table>
{% for w in s.windows %}<h2>Window {{ w.number }}: evidence per hour</h2>
<table><tr><th>Hour from</th><th>Posts</th><th>Requests</th><th>Posts by attribution basis</th></tr>
{% for h in w.hours %}<tr><td>{{ h.start.isoformat() }}</td><td>{{ "{:,}".format(h.posts) }}</td>
<td>{{ "{:,}".format(h.requests) }}</td><td>{{ bases(h.bases) }}</td></tr>{% endfor %}</table>
{% if w.evidence %}<table><tr><th>Signing agent, or why a signature did not count</th><th>Posts</th></tr>
{% for r in w.evidence %}<tr><td>{{ r.name }}</td><td>{{ "{:,}".format(r.posts) }}</td></tr>{% endfor %}
</table>{% endif %}
{% if w.routes %}<table><tr><th>Route</th><th>Posts</th></tr>{% for r in w.routes %}
<tr><td>{{ r.name }}</td><td>{{ "{:,}".format(r.posts) }}</td></tr>{% endfor %}</table>{% endif %}
{% if w.clients %}<table><tr><th>Client</th><th>Posts</th></tr>{% for r in w.clients %}
<tr><td>{{ r.name }}</td><td>{{ "{:,}".format(r.posts) }}</td></tr>{% endfor %}</table>{% endif %}
{% endfor %}
{% if not s.windows %}<p>No breach window in this period.</p>{% endif %}
</body></html>
"""

CSV_COLUMNS = [
    "organisation",
    "window",
    "window_start",
    "window_end",
    "window_posts",
    "window_amount_cents",
    "hour_start",
    "hour_end",
    "hour_posts",
    "hour_requests",
    "hour_bases",
]


def format_bases(bases: dict[str, int]) -> str:
    """Posts per attribution basis, strongest first: ``signed=120;user_agent=3``."""
    from consentry.metering.attribution import BASES

    order: dict[str, int] = {name: index for index, name in enumerate(BASES)}
    names = sorted(bases, key=lambda name: (order.get(name, len(order)), name))
    return ";".join(f"{name}={bases[name]}" for name in names)


def render_statement(statement: Statement, fmt: str) -> tuple[str, str]:
    """The statement as ``json``, ``csv`` (one row per window hour) or ``html``: (text, media type)."""
    if fmt == "json":
        return statement.model_dump_json(indent=2), "application/json"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for window in statement.windows:
            for hour in window.hours:
                writer.writerow(
                    [
                        statement.organisation,
                        window.number,
                        window.start.isoformat(),
                        window.end.isoformat(),
                        window.posts,
                        window.amount_cents,
                        hour.start.isoformat(),
                        hour.end.isoformat(),
                        hour.posts,
                        hour.requests,
                        format_bases(hour.bases),
                    ]
                )
        return out.getvalue(), "text/csv"
    if fmt == "html":
        import jinja2

        template = jinja2.Environment(autoescape=True).from_string(_HTML)
        return template.render(s=statement, usd=format_usd, bases=format_bases), "text/html"
    raise InvalidInput("format must be json, csv or html", field="format")
