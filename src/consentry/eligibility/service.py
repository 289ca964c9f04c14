"""Real-time eligibility for the first party: which of many accounts allow a setting now.

``allowed_ids`` answers for millions of ids in milliseconds from an in-memory consent state that one
``ConsentCache`` per database (and catalog) keeps; ``POST /v1/eligibility`` answers up to 10,000 ids per
call from the same state. The state is the vectorised evaluation (``evaluate_many``) of every account at
one instant, sorted by account id, with a dense lookup table per requested combination of settings when
the ids are dense (the platform's ids are), a binary search otherwise.

When the state is used, and when it is refreshed
------------------------------------------------
Every call first reads one row (``probe``): the ledger head (seq and hash), the account change epoch
(``consentry.social.changes``), the largest account id and a fingerprint of the policy versions.

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

The state and its probe are ``consentry.eligibility.state``, the caches ``consentry.eligibility.cache``;
this module asks them.

Failures deny: any error while probing, loading or evaluating makes every id not allowed (and is logged).
Unknown ids are simply not allowed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.consent.catalog import CATEGORIES, PURPOSES, RECIPIENTS, Catalog, Jurisdictions
from consentry.consent.service import (
    ConsentContext,
)
from consentry.datasets.models import Recipient
from consentry.db import Database, utcnow
from consentry.eligibility.cache import ConsentCache, cache_for
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

MAX_HTTP_IDS = 10_000
"""Most account ids one ``POST /v1/eligibility`` may name."""
Ids: TypeAlias = pa.Array | pa.ChunkedArray | np.ndarray | Sequence[int]


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
