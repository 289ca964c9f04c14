"""Real-time eligibility for the first party: which of many accounts allow a setting now.

``allowed_ids`` answers for millions of ids in milliseconds from an in-memory consent state that one
``ConsentCache`` per database (and catalog) keeps; ``POST /v1/eligibility`` answers up to 10,000 ids per
call from the same state. The state is the vectorised evaluation (``evaluate_many``) of every account at
one instant, sorted by account id, with a dense lookup table per requested combination of settings when
the ids are dense (the platform's ids are), a binary search otherwise.

When the state is used, and when it is refreshed
------------------------------------------------
Every call first reads one row (``probe``): the ledger head (seq and hash), the account change epoch
(``consentry.eligibility.models``), the largest account id and a fingerprint of the policy versions.

* Nothing changed and the clock is before the state's ``valid_until``: the state answers.
* New ledger events, recorded account changes or new accounts: only the accounts they name are read and
  evaluated again, at the current time, and patched into a new state (copy on write; readers never wait
  for a refresh they do not need). A change committed before a call is therefore visible to that call.
* Anything that cannot be patched exactly - the ledger head moved backwards or its hash no longer
  matches, a policy version was added, the epoch row was recreated or pruned past the state, a bulk
  statement changed accounts, or more than a fifth of all accounts changed - rebuilds the whole state.

Consent also changes with time alone: a birthday year ends a minority (``year(t) - birth_year``), a policy
version takes effect, an account's future-dated status change or consent event comes due. Each state
computes the earliest such instant after the time it was evaluated at (``valid_until``: at the latest the
next 1 January, 00:00 UTC); no call at or after it is answered from that state. Within
``[evaluated_at, valid_until)`` the evaluation is the same at every instant, so the answer equals a fresh
evaluation at the time of the call.

Failures deny: any error while probing, loading or evaluating makes every id not allowed (and is logged).
Unknown ids are simply not allowed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from consentry.consent import rules
from consentry.consent.catalog import CATEGORIES, PURPOSES, RECIPIENTS, Catalog, Jurisdictions
from consentry.consent.evaluate import EPOCH, account_arrays, evaluate_many, to_micros
from consentry.consent.models import ConsentEvent
from consentry.consent.policy import Policy
from consentry.consent.service import (
    ConsentContext,
    load_accounts,
    load_policies,
    read_accounts,
)
from consentry.datasets.models import Recipient
from consentry.db import Database, utcnow
from consentry.eligibility import models as _models  # registers the account change listeners
from consentry.errors import Conflict, InvalidInput, NotFound

log = logging.getLogger(__name__)
__all__ = [
    "MAX_HTTP_IDS",
    "ConsentCache",
    "Outcome",
    "allowed_ids",
    "allowed_mask",
    "cache_for",
    "check_ids",
    "resolve_settings",
    "warm",
]
assert _models  # imported for its side effect

MAX_HTTP_IDS = 10_000
"""Most account ids one ``POST /v1/eligibility`` may name."""
REBUILD_SHARE = 0.2
"""A refresh touching more than this share of all accounts rebuilds the state instead of patching it."""
FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)
Ids: TypeAlias = pa.Array | pa.ChunkedArray | np.ndarray | Sequence[int]


# --- probing ----------------------------------------------------------------------------------------


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


def probe(engine: Engine) -> Probe:
    """One small read: ledger heads (one per partition), account change epoch, largest account id,
    policy fingerprint."""
    with engine.connect() as connection:
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


def _continues(old: Probe, new: Probe) -> bool:
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


# --- loading ----------------------------------------------------------------------------------------


def load_all_events(session: Session, *, settings: Sequence[str]) -> pa.Table:
    """Every explicit event for ``settings`` of a still-mapped account (future-dated ones too)."""
    from consentry.datasets.service import ledger_events

    return ledger_events(session, settings=settings, until=FAR_FUTURE)


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


# --- the state --------------------------------------------------------------------------------------


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


def _sorted(table: pa.Table, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
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


# --- the cache --------------------------------------------------------------------------------------


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

    def state(self) -> State:
        """The state that answers a call now (refreshed first when the database or the clock moved)."""
        current = probe(self.database.engine)
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
        ids, values = _sorted(table, self.keys)
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
        if old is None or not _continues(old.probe, current) or not old.evaluated_at <= now < old.valid_until:
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


# --- asking -----------------------------------------------------------------------------------------


def resolve_settings(
    session: Session,
    *,
    catalog: Catalog,
    setting: str | None = None,
    purpose: str | None = None,
    recipient: str | None = None,
    category: str | None = None,
) -> tuple[str, ...]:
    """The catalog settings that must all allow: ``setting`` alone, or every setting covering the use of
    ``category`` data for ``purpose`` by ``recipient`` (a registered recipient's name, or a recipient kind
    ``first_party``/``third_party``). An empty result means nothing is allowed."""
    if setting is not None:
        if purpose is not None or recipient is not None:
            raise InvalidInput(
                "name either a setting, or a purpose and a recipient, not both", field="setting"
            )
        return (catalog.get(setting).key,)
    if purpose is None or recipient is None:
        raise InvalidInput("name a setting, or a purpose and a recipient", field="setting")
    if purpose not in PURPOSES:
        raise InvalidInput(f"unknown purpose {purpose!r}; known: {', '.join(PURPOSES)}", field="purpose")
    category = category or "posts"
    if category not in CATEGORIES:
        raise InvalidInput(f"unknown category {category!r}; known: {', '.join(CATEGORIES)}", field="category")
    registered = session.scalar(select(Recipient).where(Recipient.name == recipient))
    if registered is not None:
        if registered.status != "active":
            raise Conflict(f"recipient {recipient!r} is {registered.status}", field="recipient")
        if purpose not in registered.purposes:
            raise InvalidInput(
                f"recipient {recipient!r} may not receive data for {purpose!r} "
                f"(allowed: {', '.join(registered.purposes)})",
                field="purpose",
            )
        if category not in registered.categories:
            raise InvalidInput(
                f"recipient {recipient!r} may not receive {category} "
                f"(allowed: {', '.join(registered.categories)})",
                field="category",
            )
        kind = registered.kind
    elif recipient in RECIPIENTS:
        kind = recipient
    else:
        raise NotFound(
            f"unknown recipient {recipient!r}: name a registered recipient or one of {', '.join(RECIPIENTS)}",
            field="recipient",
        )
    return tuple(s.key for s in catalog.covering(recipient=kind, purpose=purpose, category=category))


def as_int64(ids: Ids) -> tuple[np.ndarray, np.ndarray | None]:
    """Ids as int64 and, when some are null (Arrow), which are valid."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if isinstance(ids, pa.Array):
        if not (pa.types.is_integer(ids.type) or pa.types.is_null(ids.type)):
            raise InvalidInput(f"ids must be integers, not {ids.type}", field="ids")
        valid = None
        if ids.null_count:
            valid = np.asarray(ids.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
            ids = pc.fill_null(ids, 0)
        values = ids.cast(pa.int64(), safe=False).to_numpy(zero_copy_only=False)
        return np.asarray(values, dtype=np.int64), valid
    array: np.ndarray = np.asarray(ids)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64), None
    if not np.issubdtype(array.dtype, np.integer):
        raise InvalidInput(f"ids must be integers, not {array.dtype}", field="ids")
    return np.ascontiguousarray(array.reshape(-1), dtype=np.int64), None


@dataclass(frozen=True)
class Outcome:
    """Which of the asked ids are allowed, as of when, from which ledger state."""

    mask: np.ndarray
    settings: tuple[str, ...]
    as_of: datetime
    ledger_seq: int | None
    error: str | None = None


def check_ids(
    source: Database | Session,
    *,
    ids: Ids,
    settings: Sequence[str],
    catalog: Catalog,
    jurisdictions: Jurisdictions,
) -> Outcome:
    """Whether each id allows every one of ``settings`` now; any failure denies every id."""
    values, valid = as_int64(ids)
    keys = tuple(dict.fromkeys(settings))
    for key in keys:
        catalog.get(key)
    at = utcnow()
    try:
        cache = cache_for(source, catalog=catalog, jurisdictions=jurisdictions)
        state = cache.state()
        at = max(at, state.evaluated_at)
        columns = tuple(state.keys.index(key) for key in keys)
        mask = state.mask(values, columns)
        if valid is not None:
            mask &= valid
        return Outcome(mask=mask, settings=keys, as_of=at, ledger_seq=state.probe.seq)
    except Exception as error:  # fail closed
        log.exception("eligibility evaluation failed for %d ids; allowing none", values.size)
        return Outcome(
            mask=np.zeros(values.size, dtype=bool),
            settings=keys,
            as_of=at,
            ledger_seq=None,
            error=error.__class__.__name__,
        )


def _settings(source: Database | Session, catalog: Catalog, **wanted: Any) -> tuple[str, ...]:
    if isinstance(source, Database):
        with source.read() as session:
            return resolve_settings(session, catalog=catalog, **wanted)
    return resolve_settings(source, catalog=catalog, **wanted)


def allowed_mask(
    source: Database | Session,
    *,
    ids: Ids,
    setting: str | None = None,
    purpose: str | None = None,
    recipient: str | None = None,
    category: str | None = None,
    ctx: ConsentContext,
) -> np.ndarray:
    """For each id (in order), whether its account allows ``setting`` - or every setting covering
    ``purpose`` use of ``category`` data by ``recipient`` - now. Unknown ids, null ids and any failure
    while evaluating: not allowed. Bad arguments (unknown setting, purpose, recipient) raise."""
    catalog, jurisdictions = ctx.catalog, ctx.jurisdictions
    keys = _settings(
        source, catalog, setting=setting, purpose=purpose, recipient=recipient, category=category
    )
    return check_ids(source, ids=ids, settings=keys, catalog=catalog, jurisdictions=jurisdictions).mask


def allowed_ids(
    source: Database | Session,
    *,
    ids: Ids,
    setting: str | None = None,
    purpose: str | None = None,
    recipient: str | None = None,
    category: str | None = None,
    ctx: ConsentContext,
) -> np.ndarray:
    """The ids (int64, in the order given, repeats kept) whose accounts allow now; see ``allowed_mask``.

    ``source`` is a ``Database`` or any ``Session`` of one; the answer reflects committed data (a
    session's own uncommitted changes are not seen). Example::

        ctx = ConsentContext.from_settings(settings)
        allowed = allowed_ids(database, ids=pa.array(author_ids), setting="assistant_realtime", ctx=ctx)
    """
    values, _ = as_int64(ids)
    mask = allowed_mask(
        source,
        ids=ids,
        setting=setting,
        purpose=purpose,
        recipient=recipient,
        category=category,
        ctx=ctx,
    )
    return np.asarray(values[mask], dtype=np.int64)


def warm(database: Database, ctx: ConsentContext) -> None:
    """Build the state ahead of the first call (the API does this at start, on a thread)."""
    try:
        cache_for(database, catalog=ctx.catalog, jurisdictions=ctx.jurisdictions).state()
    except Exception as error:  # the first call builds it instead
        log.warning("could not warm the eligibility state: %s", error)
