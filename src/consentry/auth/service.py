"""Issuing and resolving bearer tokens. Only a SHA-256 of each token is stored."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
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


def resolve_token(session: Session, token: str) -> Principal:
    """The principal a presented token stands for; ``Unauthenticated`` if unknown, expired or revoked."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    now = utcnow()
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        raise Unauthenticated("the bearer token is unknown, expired or revoked")
    if row.kind == "account":
        account = session.get(Account, row.account_id)
        if account is None or account.status == "deleted":
            raise Unauthenticated("the account of this token no longer exists")
    return Principal(kind=row.kind, token_id=row.id, account_id=row.account_id, client=row.client)


def revoke_tokens(session: Session, *, account_id: int) -> int:
    """Revoke every token of an account (for example when it is deleted); returns how many."""
    rows = session.scalars(
        select(ApiToken).where(ApiToken.account_id == account_id, ApiToken.revoked_at.is_(None))
    ).all()
    now = utcnow()
    for row in rows:
        row.revoked_at = now
    return len(rows)


class RecentTokens:
    """Tokens this process verified against the database recently, for use while it is unreachable.

    ``remember`` after every successful verification, ``forget`` when one fails; ``recall`` gives the
    principal of a token verified at most ``max_age`` ago. Keyed by the token's SHA-256 (the token itself
    is never kept), bounded to ``size`` entries (the least recently verified go first), thread-safe. Only
    routes whose answer during an outage grants nothing (eligibility answers ``allowed: []``) consult it:
    it lets them say "nothing, because of the outage" rather than "who are you?"."""

    def __init__(self, *, size: int = 10_000) -> None:
        self.size = size
        self._seen: OrderedDict[str, tuple[Principal, datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, token: str, principal: Principal, *, at: datetime) -> None:
        """``token`` was verified at ``at`` and stands for ``principal``."""
        key = hash_token(token)
        with self._lock:
            self._seen[key] = (principal, at)
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
