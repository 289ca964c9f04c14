"""The eligibility state: the effective consent of every known account at one instant, what it was built
from (``probe``: one small read of the ledger heads, the account change epoch, the largest account id and
a policy fingerprint), how long it holds by time alone (``valid_until``), and patching it copy-on-write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from consentry.consent import reader, rules
from consentry.consent.evaluate import EPOCH, account_arrays, to_micros
from consentry.consent.policy import Policy

FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True)
class Probe:
    """What a state was built from; compared on every call."""

    seq: int
    head_hash: str
    version: int
    token: str | None
    pruned_below: int
    max_account: int
    policies: str
    heads: tuple[tuple[int, str], ...] = ()
    """Every ledger partition's head (seq, hash), in partition order; ``seq`` is the greatest."""


_PROBE = (
    "SELECT h.seq, h.hash, e.version, e.token, e.pruned_below, (SELECT max(id) FROM accounts), "
    "(SELECT count(*) FROM policy_versions), (SELECT max(version) FROM policy_versions), "
    "(SELECT max(created_at) FROM policy_versions) "
    "FROM ledger_head h LEFT JOIN eligibility_epoch e ON e.id = 1 ORDER BY h.id"
)


def probe(source: Engine | Connection) -> Probe:
    """One small read: ledger heads (one per partition), account change epoch, largest account id,
    policy fingerprint (on a connection of its own, or on the one given)."""
    if isinstance(source, Connection):
        rows = source.exec_driver_sql(_PROBE).all()
    else:
        with source.connect() as connection:
            rows = connection.exec_driver_sql(_PROBE).all()
    heads = tuple((int(r[0]), str(r[1])) for r in rows)
    row = max(rows, key=lambda r: int(r[0]))
    seq, head_hash, version, token, pruned, max_account, count, newest, created = row
    return Probe(
        heads=heads,
        seq=int(seq),
        head_hash=str(head_hash),
        version=int(version or 0),
        token=token,
        pruned_below=int(pruned or 0),
        max_account=int(max_account or 0),
        policies=f"{count}|{newest}|{created}",
    )


def continues(old: Probe, new: Probe) -> bool:
    """Whether ``new`` can be reached from ``old`` by patching (the same ledger, epoch and policies)."""
    if new.policies != old.policies or new.seq < old.seq or new.version < old.version:
        return False
    if new.seq == old.seq and new.head_hash != old.head_hash:
        return False
    if len(new.heads) != len(old.heads) or any(
        n[0] < o[0] or (n[0] == o[0] and n[1] != o[1]) for n, o in zip(new.heads, old.heads, strict=True)
    ):
        return False
    if old.token is not None and new.token != old.token:
        return False
    return old.version >= new.pruned_below and new.max_account >= old.max_account


def load_all_events(session: Session, *, settings: Sequence[str]) -> pa.Table:
    """Every explicit event for ``settings`` of a still-mapped account (future-dated ones too), up to the
    ledger's position now."""
    return reader.events(session, upto=reader.position(session), settings=settings)


def _micros(column: pa.ChunkedArray, fill: int) -> np.ndarray:
    ints = pc.cast(column, pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return np.asarray(pc.fill_null(ints, fill).to_numpy(zero_copy_only=False), dtype=np.int64)


def valid_until(
    at: datetime, *, accounts: pa.Table, events: pa.Table, policies: Sequence[Policy], upto_seq: int
) -> datetime:
    """The first instant after ``at`` at which the evaluation of these accounts may change by time alone,
    derived from the consent rule table (``rules.next_change``): the next 1 January for accounts the
    minor rule counts years of, a future-dated status change of an inactive account, a policy version
    taking effect, a future-dated event (of seq ``<= upto_seq``; later events are patched in when they
    are seen). ``FAR_FUTURE`` when nothing can change."""
    whens = [step.when for step in rules.CONSENT_STEPS if step.when is not None]
    when = _micros(events["recorded_at"], np.iinfo(np.int64).min)
    seq = np.asarray(events["seq"].to_numpy(zero_copy_only=False), dtype=np.int64)
    bound = rules.next_change(
        at,
        accounts=account_arrays(accounts, whens),
        size=accounts.num_rows,
        event_times=when[seq <= upto_seq],
        policy_times=np.array([to_micros(p.effective_at) for p in policies], dtype=np.int64),
    )
    return min(FAR_FUTURE, EPOCH + timedelta(microseconds=min(bound, to_micros(FAR_FUTURE))))


@dataclass
class State:
    """Effective consent of every known account at ``evaluated_at``, valid until ``valid_until``.

    ``ids`` is sorted and unique; ``values[i, k]`` is whether ``ids[i]`` allows ``keys[k]``.
    """

    probe: Probe
    keys: tuple[str, ...]
    ids: np.ndarray
    values: np.ndarray
    evaluated_at: datetime
    valid_until: datetime
    _tables: dict[tuple[int, ...], np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def low(self) -> int:
        return int(self.ids[0]) if self.ids.size else 0

    @property
    def span(self) -> int:
        return int(self.ids[-1]) - self.low + 1 if self.ids.size else 0

    @property
    def dense(self) -> bool:
        """Whether ids are dense enough for a lookup table over their whole range."""
        return self.ids.size > 0 and self.span <= 8 * self.ids.size + 1024

    def fresh(self, current: Probe, now: datetime) -> bool:
        """Whether this state answers a call at ``now`` when the database reads ``current``."""
        return current == self.probe and self.evaluated_at <= now < self.valid_until

    def _rows(self, columns: tuple[int, ...]) -> np.ndarray:
        if len(columns) == 1:
            return np.ascontiguousarray(self.values[:, columns[0]])
        return np.asarray(self.values[:, list(columns)].all(axis=1))

    def _table(self, columns: tuple[int, ...]) -> np.ndarray:
        """Per id offset from ``low`` (plus one trailing False for out-of-range ids): allowed or not."""
        found = self._tables.get(columns)
        if found is None:
            found = np.zeros(self.span + 1, dtype=bool)
            found[self.ids - self.low] = self._rows(columns)
            self._tables[columns] = found
        return found

    def mask(self, query: np.ndarray, columns: tuple[int, ...]) -> np.ndarray:
        """Whether each id of ``query`` (int64) allows every setting of ``columns``."""
        if not columns or self.ids.size == 0 or query.size == 0:
            return np.zeros(query.size, dtype=bool)
        if self.dense:
            table = self._table(columns)
            offset = (query - self.low).view(np.uint64)  # ids below low wrap to huge offsets
            np.minimum(offset, self.span, out=offset)
            return np.asarray(table[offset.view(np.int64)], dtype=bool)
        rows = self._tables.get(columns)
        if rows is None:
            rows = self._tables[columns] = self._rows(columns)
        position = np.minimum(np.searchsorted(self.ids, query), self.ids.size - 1)
        return np.asarray((self.ids[position] == query) & rows[position], dtype=bool)


def sort_by_id(table: pa.Table, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Account ids (sorted) and, per id, whether it allows each of ``keys``, from an evaluated table."""
    ids = np.asarray(table["account_id"].to_numpy(), dtype=np.int64)
    values = np.empty((len(ids), len(keys)), dtype=bool)
    for k, key in enumerate(keys):
        values[:, k] = np.asarray(table[key].to_numpy(zero_copy_only=False), dtype=bool)
    order = np.argsort(ids, kind="stable")
    return ids[order], values[order]


def patched(
    old: State,
    *,
    probe: Probe,
    ids: np.ndarray,
    values: np.ndarray,
    gone: np.ndarray,
    evaluated_at: datetime,
    valid_until: datetime,
) -> State:
    """A new state: ``old`` with the rows of ``ids`` (sorted) replaced or added and ``gone`` removed."""
    all_ids, all_values = old.ids, old.values.copy()
    n = all_ids.size
    if ids.size and n:
        position = np.minimum(np.searchsorted(all_ids, ids), n - 1)
        present = all_ids[position] == ids
        all_values[position[present]] = values[present]
        new_ids, new_values = ids[~present], values[~present]
    else:
        new_ids, new_values = ids, values
    if gone.size and n:
        position = np.minimum(np.searchsorted(all_ids, gone), n - 1)
        drop = position[all_ids[position] == gone]
        all_ids, all_values = np.delete(all_ids, drop), np.delete(all_values, drop, axis=0)
    if new_ids.size:
        if not all_ids.size or new_ids[0] > all_ids[-1]:
            all_ids = np.concatenate([all_ids, new_ids])
            all_values = np.concatenate([all_values, new_values])
        else:
            where = np.searchsorted(all_ids, new_ids)
            all_ids = np.insert(all_ids, where, new_ids)
            all_values = np.insert(all_values, where, new_values, axis=0)
    return State(
        probe=probe,
        keys=old.keys,
        ids=all_ids,
        values=all_values,
        evaluated_at=evaluated_at,
        valid_until=min(old.valid_until, valid_until),
    )
