"""The process-wide consent caches: one ``ConsentCache`` per database and catalog keeps the eligibility state
current, patching it with the accounts that changed or rebuilding it when it cannot be patched exactly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.orm import Session

from consentry.consent.catalog import Catalog, Jurisdictions
from consentry.consent.evaluate import evaluate_many
from consentry.consent.models import ConsentEvent
from consentry.consent.policy import Policy
from consentry.consent.service import (
    load_accounts,
    load_policies,
    read_accounts,
)
from consentry.db import Database, utcnow
from consentry.eligibility.state import (
    Probe,
    State,
    continues,
    load_all_events,
    patched,
    probe,
    sort_by_id,
    valid_until,
)

REBUILD_SHARE = 0.2
"""A refresh touching more than this share of all accounts rebuilds the state instead of patching it."""


@dataclass
class Stats:
    """What a cache has done (for tests, benchmarks and operators)."""

    rebuilds: int = 0
    patches: int = 0
    hits: int = 0
    last_rebuild_s: float = 0.0
    last_patch_s: float = 0.0


class ConsentCache:
    """The effective consent of every account of one database, for one catalog, kept current."""

    def __init__(self, database: Database, *, catalog: Catalog, jurisdictions: Jurisdictions) -> None:
        self.database = database
        self.keys = catalog.keys
        self.jurisdictions = jurisdictions
        self.stats = Stats()
        self._state: State | None = None
        self._lock = threading.Lock()

    def state(self, connection: Connection | None = None) -> State:
        """The state that answers a call now (refreshed first when the database or the clock moved).

        ``connection``: a request's open connection to read the first probe through (saves a checkout).
        Its transaction may have begun before the state's last refresh, so when it does not match, the
        probe is read again on a connection of its own before anything is refreshed."""
        current = probe(self.database.engine if connection is None else connection)
        state = self._state
        if state is not None and state.fresh(current, utcnow()):
            self.stats.hits += 1
            return state
        with self._lock:
            state = self._state
            current = probe(self.database.engine)
            if state is not None and state.fresh(current, utcnow()):
                self.stats.hits += 1
                return state
            state = self._refresh(state, current)
            self._state = state
            return state

    def invalidate(self) -> None:
        """Forget the state; the next call rebuilds it."""
        with self._lock:
            self._state = None

    def _evaluate(
        self, accounts: pa.Table, events: pa.Table, policies: Sequence[Policy], upto_seq: int
    ) -> tuple[np.ndarray, np.ndarray, datetime, datetime]:
        at = utcnow()  # after loading: everything loaded was committed, so recorded, before this
        table = evaluate_many(
            accounts, events, settings=self.keys, at=at, policies=policies, jurisdictions=self.jurisdictions
        )
        ids, values = sort_by_id(table, self.keys)
        until = valid_until(at, accounts=accounts, events=events, policies=policies, upto_seq=upto_seq)
        return ids, values, at, until

    def rebuild(self) -> State:
        """Evaluate every account again (and keep the result)."""
        with self._lock:
            self._state = self._rebuild(probe(self.database.engine))
            return self._state

    def _rebuild(self, current: Probe) -> State:
        started = time.perf_counter()
        with self.database.read() as session:
            accounts = load_accounts(session)
            events = load_all_events(session, settings=self.keys)
            policies = load_policies(session)
        ids, values, at, until = self._evaluate(accounts, events, policies, current.seq)
        self.stats.rebuilds += 1
        self.stats.last_rebuild_s = time.perf_counter() - started
        return State(
            probe=current, keys=self.keys, ids=ids, values=values, evaluated_at=at, valid_until=until
        )

    def _refresh(self, old: State | None, current: Probe) -> State:
        now = utcnow()
        if old is None or not continues(old.probe, current) or not old.evaluated_at <= now < old.valid_until:
            return self._rebuild(current)
        started = time.perf_counter()
        with self.database.read() as session:
            affected = self._affected(session, old.probe, current)
            if affected is None or len(affected) > max(1_000, REBUILD_SHARE * old.ids.size):
                return self._rebuild(current)
            wanted = sorted(affected)
            accounts, events = read_accounts(session, account_ids=wanted, settings=self.keys)
            policies = load_policies(session)
        ids, values, at, until = self._evaluate(accounts, events, policies, current.seq)
        gone = np.setdiff1d(np.asarray(wanted, dtype=np.int64), ids)
        state = patched(
            old, probe=current, ids=ids, values=values, gone=gone, evaluated_at=at, valid_until=until
        )
        self.stats.patches += 1
        self.stats.last_patch_s = time.perf_counter() - started
        return state

    def _affected(self, session: Session, old: Probe, new: Probe) -> set[int] | None:
        """Accounts to evaluate again between two probes; ``None``: rebuild everything."""
        affected: set[int] = set()
        parts = len(new.heads)
        for partition, ((old_seq, old_hash), (new_seq, _)) in enumerate(
            zip(old.heads, new.heads, strict=True)
        ):
            if new_seq <= old_seq:
                continue
            if old_seq > 0:
                head = session.scalar(select(ConsentEvent.hash).where(ConsentEvent.seq == old_seq))
                if head != old_hash:
                    return None  # not the ledger the state was built from
            # with several partitions, seqs interleave: only this partition's seqs in the range
            own = f" AND (e.seq - 1) % {parts} = {partition}" if parts > 1 else ""
            rows = session.execute(
                text(
                    "SELECT DISTINCT s.account_id FROM consent_events e JOIN consent_subjects s "
                    f"ON s.subject_key = e.subject_key WHERE e.seq > :a AND e.seq <= :b{own}"
                ),
                {"a": old_seq, "b": new_seq},
            )
            affected.update(int(r[0]) for r in rows)
        if new.version > old.version:
            rows = session.execute(
                text(
                    "SELECT DISTINCT account_id FROM eligibility_changes WHERE version > :a AND version <= :b"
                ),
                {"a": old.version, "b": new.version},
            )
            for (account_id,) in rows:
                if account_id is None:
                    return None  # a bulk statement changed accounts
                affected.add(int(account_id))
        if new.max_account > old.max_account:
            rows = session.execute(
                text("SELECT id FROM accounts WHERE id > :a AND id <= :b"),
                {"a": old.max_account, "b": new.max_account},
            )
            affected.update(int(r[0]) for r in rows)
        return affected


_CACHES: dict[tuple[str, tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...]], ConsentCache] = {}

_DATABASES: dict[str, Database] = {}

_REGISTRY_LOCK = threading.Lock()


def _database(source: Database | Session) -> Database:
    if isinstance(source, Database):
        url = source.engine.url.render_as_string(hide_password=False)
        with _REGISTRY_LOCK:
            return _DATABASES.setdefault(url, source)
    bind = source.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    url = engine.url.render_as_string(hide_password=False)
    with _REGISTRY_LOCK:
        found = _DATABASES.get(url)
        if found is None:  # read through a database of our own: the state holds committed data only
            found = _DATABASES[url] = Database(url)
        return found


def cache_for(source: Database | Session, *, catalog: Catalog, jurisdictions: Jurisdictions) -> ConsentCache:
    """The process-wide cache of a database (any session of it names the same one) and catalog."""
    database = _database(source)
    key = (
        database.engine.url.render_as_string(hide_password=False),
        catalog.keys,
        tuple(sorted(jurisdictions.groups.items())),
    )
    with _REGISTRY_LOCK:
        cache = _CACHES.get(key)
        if cache is None:
            cache = _CACHES[key] = ConsentCache(database, catalog=catalog, jurisdictions=jurisdictions)
        return cache
