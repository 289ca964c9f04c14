"""Per-post AI usage signals: ``Content-Usage`` (IETF AI preferences) and ``X-Robots-Tag``.

A post's signals reflect its author's effective consent for third parties: for each purpose in
``SIGNAL_PURPOSES``, the catalog settings covering (``third_party``, purpose, ``posts``) must all allow.
No covering setting, a missing value, an unknown author or any error gives the restrictive signals
(fail closed).

``Content-Usage`` is a structured-field dictionary (RFC 9651) per draft-ietf-aipref-attach, with the labels
of draft-ietf-aipref-vocab and the tokens ``y``/``n``. The catalog purpose ``ai-input`` (Cloudflare's
name) is the vocabulary's ``ai-use``; ``search`` is left unstated because an author's settings do not
cover it (and the vocabulary lets ``search=y`` override ``train-ai=n``).

Two ways to compute them: ``post_usage`` / ``usage_many`` evaluate the author's consent from the ledger at
a given time (one account, or many vectorised); ``current_usage`` answers for now from the process's
consent state (``consentry.eligibility``), which every call first checks against the database (ledger
heads, account changes, policy versions, and the next instant at which consent changes by time alone),
so a choice, a policy or an account change committed by any process before the call is in its answer.
The request path uses ``current_usage``: it costs one small read instead of an evaluation.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from consentry.consent.catalog import Catalog
from consentry.consent.service import ConsentContext, evaluate_accounts, settings_view
from consentry.db import Database, utcnow

log = logging.getLogger(__name__)

RECIPIENT = "third_party"
CATEGORY = "posts"
SIGNAL_PURPOSES: tuple[str, ...] = ("train-ai", "ai-input")
"""Catalog purposes a post's signals speak about, in header order."""
AIPREF_LABELS: Mapping[str, str] = {"train-ai": "train-ai", "ai-input": "ai-use"}
"""Catalog purpose -> usage-category label of draft-ietf-aipref-vocab."""
CONTENT_USAGE = "Content-Usage"
X_ROBOTS_TAG = "X-Robots-Tag"
NOAI = "noai, noimageai"


@dataclass(frozen=True)
class Usage:
    """Whether third parties may use an author's posts for AI training and as AI input."""

    train_ai: bool = False
    ai_input: bool = False

    def allows(self, purpose: str) -> bool:
        """Whether ``purpose`` (a catalog purpose name) is allowed; unknown purposes are not."""
        return {"train-ai": self.train_ai, "ai-input": self.ai_input}.get(purpose, False)

    @property
    def content_usage(self) -> str:
        """The ``Content-Usage`` field value, e.g. ``train-ai=n, ai-use=n``."""
        return ", ".join(f"{AIPREF_LABELS[p]}={'y' if self.allows(p) else 'n'}" for p in SIGNAL_PURPOSES)

    def headers(self) -> dict[str, str]:
        """Response headers: ``Content-Usage`` always, ``X-Robots-Tag`` when training is not allowed."""
        return dict(_headers(self))


@functools.cache
def _headers(usage: Usage) -> tuple[tuple[str, str], ...]:
    headers = [(CONTENT_USAGE, usage.content_usage)]
    if not usage.train_ai:
        headers.append((X_ROBOTS_TAG, NOAI))
    return tuple(headers)


RESTRICTIVE = Usage()


def restrictive_headers() -> dict[str, str]:
    """The signals used whenever the author's choice is unknown or cannot be computed."""
    return RESTRICTIVE.headers()


def covering_settings(catalog: Catalog) -> dict[str, tuple[str, ...]]:
    """For each signal purpose, the keys of the settings covering third-party use of posts."""
    return {
        purpose: tuple(
            s.key for s in catalog.covering(recipient=RECIPIENT, purpose=purpose, category=CATEGORY)
        )
        for purpose in SIGNAL_PURPOSES
    }


def _allows(value: object) -> bool:
    return value is True or value == "allow"


def usage_of(values: Mapping[str, object], *, catalog: Catalog) -> Usage:
    """The usage an author allows, from effective values per setting key (``"allow"``/``True`` allow).

    A purpose is allowed only when at least one setting covers it and every covering setting allows.
    Any error gives ``RESTRICTIVE``.
    """
    try:
        covering = covering_settings(catalog)
        allowed = {
            p: bool(keys) and all(_allows(values.get(k)) for k in keys) for p, keys in covering.items()
        }
        return Usage(train_ai=allowed["train-ai"], ai_input=allowed["ai-input"])
    except Exception:
        log.exception("cannot compute AI usage signals; sending the restrictive ones")
        return RESTRICTIVE


def signal_headers(values: Mapping[str, object], *, catalog: Catalog) -> dict[str, str]:
    """Response headers for a post whose author has these effective values (pure; fails closed)."""
    return usage_of(values, catalog=catalog).headers()


def most_restrictive(usages: Iterable[Usage]) -> Usage:
    """One usage for a response holding several authors' posts: a purpose is allowed only if all allow.

    This is the combination rule of draft-ietf-aipref-vocab (any disallow wins); no usage at all gives
    ``RESTRICTIVE``.
    """
    listed = list(usages)
    if not listed:
        return RESTRICTIVE
    return Usage(train_ai=all(u.train_ai for u in listed), ai_input=all(u.ai_input for u in listed))


def usages_from_table(table: pa.Table, *, catalog: Catalog, author_ids: Iterable[int]) -> dict[int, Usage]:
    """Usage per author from ``evaluate_many`` output (one boolean column per setting key).

    Authors absent from the table, and settings absent from its columns, count as deny.
    """
    wanted = list(dict.fromkeys(int(a) for a in author_ids))
    result = dict.fromkeys(wanted, RESTRICTIVE)
    if table.num_rows == 0 or not wanted:
        return result
    ids = np.asarray(table.column("account_id").to_numpy(), dtype=np.int64)
    allowed: dict[str, np.ndarray] = {}
    for purpose, keys in covering_settings(catalog).items():
        verdict = np.full(len(ids), bool(keys), dtype=bool)
        for key in keys:
            if key not in table.column_names:
                verdict[:] = False
                break
            column = pc.fill_null(table.column(key), False)  # null counts as deny
            verdict &= np.asarray(column.to_numpy(zero_copy_only=False), dtype=bool)
        allowed[purpose] = verdict
    known = set(wanted)
    for index, account_id in enumerate(ids.tolist()):
        if account_id in known:
            result[account_id] = Usage(
                train_ai=bool(allowed["train-ai"][index]), ai_input=bool(allowed["ai-input"][index])
            )
    return result


def usage_many(
    session: Session, *, author_ids: Iterable[int], ctx: ConsentContext, at: datetime | None = None
) -> dict[int, Usage]:
    """Usage of many authors at once (vectorised evaluation); unknown authors and errors: restrictive."""
    wanted = list(dict.fromkeys(int(a) for a in author_ids))
    try:
        at = at or utcnow()
        keys = list(dict.fromkeys(k for ks in covering_settings(ctx.catalog).values() for k in ks))
        if not wanted or not keys:
            return dict.fromkeys(wanted, RESTRICTIVE)
        table = evaluate_accounts(session, account_ids=wanted, settings=keys, at=at, ctx=ctx)
        return usages_from_table(table, catalog=ctx.catalog, author_ids=wanted)
    except Exception:
        log.exception(
            "cannot compute AI usage signals for %d authors; sending the restrictive ones", len(wanted)
        )
        return dict.fromkeys(wanted, RESTRICTIVE)


def signal_headers_many(
    session: Session, *, author_ids: Iterable[int], ctx: ConsentContext, at: datetime | None = None
) -> dict[int, dict[str, str]]:
    """Response headers per author id for many authors at once (fails closed per author)."""
    return {a: u.headers() for a, u in usage_many(session, author_ids=author_ids, ctx=ctx, at=at).items()}


def post_usage(session: Session, *, author_id: int, ctx: ConsentContext, at: datetime | None = None) -> Usage:
    """Usage allowed by one author (single-check evaluation); any error, or no such author: restrictive."""
    try:
        states = settings_view(session, account_id=author_id, ctx=ctx, at=at)
        return usage_of({s.key: s.value for s in states}, catalog=ctx.catalog)
    except Exception:
        log.exception("cannot compute AI usage signals of author %s; sending the restrictive ones", author_id)
        return RESTRICTIVE


def post_signal_headers(
    session: Session, *, author_id: int, ctx: ConsentContext, at: datetime | None = None
) -> dict[str, str]:
    """Response headers for a post by ``author_id`` at ``at`` (default now); fails closed."""
    return post_usage(session, author_id=author_id, ctx=ctx, at=at).headers()


@functools.cache
def _signal_keys(catalog: Catalog) -> tuple[tuple[str, ...], tuple[str, ...]]:
    covering = covering_settings(catalog)
    return covering["train-ai"], covering["ai-input"]


def current_usage(
    database: Database,
    *,
    author_ids: Iterable[int],
    ctx: ConsentContext,
    connection: Connection | None = None,
) -> dict[int, Usage]:
    """Usage of these authors now, from the process's consent state (see the module docstring): the
    answer ``usage_many`` gives at the time of the call, without evaluating anything unless the database
    or the clock moved. ``connection``: the caller's open connection to ``database``, to check the state
    through. Unknown authors and any failure: restrictive."""
    from consentry.eligibility.cache import cache_for  # the eligibility state's one home

    wanted = list(dict.fromkeys(int(a) for a in author_ids))
    try:
        cache = cache_for(database, catalog=ctx.catalog, jurisdictions=ctx.jurisdictions)
        state = cache.state(connection)
        ids = np.asarray(wanted, dtype=np.int64)
        verdicts = []
        for keys in _signal_keys(ctx.catalog):
            if not keys:  # no setting covers the purpose: never allowed
                verdicts.append(np.zeros(ids.size, dtype=bool))
            else:
                verdicts.append(state.mask(ids, tuple(state.keys.index(k) for k in keys)))
        train, use = verdicts
        return {a: Usage(train_ai=bool(train[i]), ai_input=bool(use[i])) for i, a in enumerate(wanted)}
    except Exception:
        log.exception(
            "cannot read the AI usage signals of %d authors; sending the restrictive ones", len(wanted)
        )
        return dict.fromkeys(wanted, RESTRICTIVE)


def current_signal_headers(
    database: Database, *, author_id: int, ctx: ConsentContext, connection: Connection | None = None
) -> dict[str, str]:
    """Response headers for a post by ``author_id`` now (``current_usage``); fails closed."""
    usage = current_usage(database, author_ids=(author_id,), ctx=ctx, connection=connection)
    return usage[int(author_id)].headers()
