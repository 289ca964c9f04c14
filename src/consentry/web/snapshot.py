"""The dashboard's consent state in memory: every account and explicit event as NumPy arrays.

Reading a million accounts and their events out of the database takes seconds, so
:class:`ConsentStateCache` keeps them in memory (one copy per process) and brings them up to date on
every request:

* events are append-only with increasing ``seq``, so only events after the last seen one are read; they
  go into a small sorted *delta* that is folded into the *base* when it grows;
* new accounts (ids above the largest seen) are read the same way; account status changes (deactivation,
  deletion) have no change log, so the accounts are re-read in full when older than ``accounts_ttl``.

The counting over a snapshot is in ``consentry.web.cohorts``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.orm import Session

from consentry.consent import reader
from consentry.consent.catalog import Jurisdictions
from consentry.consent.evaluate import group_index
from consentry.consent.ledger import partition_count as ledger_partitions
from consentry.consent.service import load_accounts
from consentry.db import utcnow

Array = npt.NDArray[Any]
NO_BIRTH = -100_000
NEVER = int(np.iinfo(np.int64).max)
LATEST = datetime(9999, 12, 31, tzinfo=UTC)


def read_events(session: Session, *, settings: Sequence[str], after_seq: int = 0) -> pa.Table:
    """Explicit events of still-mapped accounts with ``seq`` above ``after_seq`` for ``settings``, up to
    the ledger's position now (one partition; the cache reads a ledger of several in full), in seq order
    when reading on from ``after_seq``."""
    upto = reader.position(session)
    after = reader.Position((after_seq,) * upto.partitions) if after_seq > 0 else None
    return reader.events(session, upto=upto, after=after, settings=settings, ordered=after is not None)


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
