"""Issuing and resolving bearer tokens. Only a SHA-256 of each token is stored."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from consentry.auth.models import ApiToken
from consentry.db import utcnow
from consentry.errors import InvalidInput, NotFound, Unauthenticated
from consentry.social.models import Account

CLIENTS = ("web", "ios", "android", "api")
TOKEN_PREFIX = "cst_"  # noqa: S105 (a prefix, not a secret)


@dataclass(frozen=True)
class Principal:
    """Who is calling: an operator (``admin``) or one account holder (``account``)."""

    kind: str
    token_id: int
    account_id: int | None = None
    client: str | None = None

    @property
    def is_admin(self) -> bool:
        """Whether this principal is an operator."""
        return self.kind == "admin"


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_client(client: str | None, *, field: str = "client") -> str | None:
    """Validate a client kind (``web``, ``ios``, ``android``, ``api``)."""
    if client is not None and client not in CLIENTS:
        raise InvalidInput(f"client must be one of {', '.join(CLIENTS)}, not {client!r}", field=field)
    return client


def create_token(
    session: Session,
    *,
    kind: str,
    account_id: int | None = None,
    client: str | None = None,
    label: str = "",
    expires_at: datetime | None = None,
) -> str:
    """Create a token and return it; it is shown this once and stored hashed."""
    if kind not in ("admin", "account"):
        raise InvalidInput("token kind must be 'admin' or 'account'", field="kind")
    check_client(client)
    if kind == "account":
        if account_id is None:
            raise InvalidInput("an account token needs an account", field="account_id")
        account = session.get(Account, account_id)
        if account is None:
            raise NotFound(f"account {account_id} does not exist", field="account_id")
        if account.status == "deleted":
            raise InvalidInput(f"account {account_id} is deleted", field="account_id")
    elif account_id is not None:
        raise InvalidInput("an admin token names no account", field="account_id")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiToken(
            token_hash=hash_token(token),
            kind=kind,
            account_id=account_id,
            client=client,
            label=label,
            created_at=utcnow(),
            expires_at=expires_at,
        )
    )
    session.flush()
    return token


_TOKEN = (  # built once: building a statement costs more than running it
    select(
        ApiToken.id,
        ApiToken.kind,
        ApiToken.account_id,
        ApiToken.client,
        ApiToken.revoked_at,
        ApiToken.expires_at,
        Account.status,
    )
    .outerjoin(Account, Account.id == ApiToken.account_id)
    .where(ApiToken.token_hash == bindparam("token_hash"))
)


def verify_token(session: Session, token: str) -> tuple[Principal, datetime | None]:
    """The principal a presented token stands for and when the token expires (``None``: never), in one
    query; ``Unauthenticated`` if it is unknown, expired or revoked, or its account is deleted."""
    row = session.execute(_TOKEN, {"token_hash": hash_token(token)}).one_or_none()
    now = utcnow()
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        raise Unauthenticated("the bearer token is unknown, expired or revoked")
    if row.kind == "account" and (row.status is None or row.status == "deleted"):
        raise Unauthenticated("the account of this token no longer exists")
    principal = Principal(kind=row.kind, token_id=row.id, account_id=row.account_id, client=row.client)
    return principal, row.expires_at


def resolve_token(session: Session, token: str) -> Principal:
    """The principal a presented token stands for; ``Unauthenticated`` if unknown, expired or revoked."""
    return verify_token(session, token)[0]


_revocations = 0
_revocations_lock = threading.Lock()


def note_revocation() -> None:
    """Tokens were revoked in this process: every token cache of the process verifies again at once
    (``RecentTokens.fresh``). Called by every function that revokes tokens."""
    global _revocations  # one counter per process, by design
    with _revocations_lock:
        _revocations += 1


def revocations() -> int:
    """How many times tokens were revoked in this process (the token caches' generation)."""
    return _revocations


def revoke_tokens(session: Session, *, account_id: int) -> int:
    """Revoke every token of an account (for example when it is deleted); returns how many."""
    rows = session.scalars(
        select(ApiToken).where(ApiToken.account_id == account_id, ApiToken.revoked_at.is_(None))
    ).all()
    now = utcnow()
    for row in rows:
        row.revoked_at = now
    note_revocation()
    return len(rows)


class RecentTokens:
    """Tokens this process verified against the database recently, for use while it is unreachable.

    ``remember`` after every successful verification, ``forget`` when one fails; ``recall`` gives the
    principal of a token verified at most ``max_age`` ago. Keyed by the token's SHA-256 (the token itself
    is never kept), bounded to ``size`` entries (the least recently verified go first), thread-safe. Only
    routes whose answer during an outage grants nothing (eligibility answers ``allowed: []``) consult it:
    it lets them say "nothing, because of the outage" rather than "who are you?".

    ``fresh`` serves the same memory as a short cache of verifications for every route (see
    ``docs/api.md``, "Token verification"): a token verified within ``CONSENTRY_TOKEN_CACHE_SECONDS`` is
    not looked up again, unless it has expired since, or this process revoked tokens since."""

    def __init__(self, *, size: int = 10_000) -> None:
        self.size = size
        self._seen: OrderedDict[str, tuple[Principal, datetime, datetime | None, int]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(
        self,
        token: str,
        principal: Principal,
        *,
        at: datetime,
        expires_at: datetime | None = None,
        generation: int | None = None,
    ) -> None:
        """``token`` was verified at ``at`` and stands for ``principal`` until ``expires_at``;
        ``generation`` is ``revocations()`` read before the verification began."""
        key = hash_token(token)
        seen = revocations() if generation is None else generation
        with self._lock:
            self._seen[key] = (principal, at, expires_at, seen)
            self._seen.move_to_end(key)
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)

    def forget(self, token: str) -> None:
        """``token`` failed verification (unknown, expired, revoked): never recall it."""
        with self._lock:
            self._seen.pop(hash_token(token), None)

    def recall(self, token: str, *, now: datetime, max_age: timedelta) -> Principal | None:
        """The principal of ``token`` if it was verified within ``max_age`` before ``now``, else ``None``."""
        with self._lock:
            found = self._seen.get(hash_token(token))
        if found is None or not timedelta(0) <= now - found[1] <= max_age:
            return None
        return found[0]

    def fresh(self, token: str, *, now: datetime, max_age: timedelta) -> Principal | None:
        """The principal of ``token`` if it was verified within ``max_age`` before ``now``, has not
        expired, and no token was revoked in this process since; else ``None`` (verify it again)."""
        with self._lock:
            found = self._seen.get(hash_token(token))
        if found is None:
            return None
        principal, at, expires_at, generation = found
        if generation != revocations() or not timedelta(0) <= now - at < max_age:
            return None
        if expires_at is not None and expires_at <= now:
            return None
        return principal
