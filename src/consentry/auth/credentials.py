"""What a request presents as its credential: the ``Authorization`` header, else the session cookie.

One rule for every route that accepts both (the JSON API, the platform's reads, the web pages) and for
the CSRF check of cookie sessions: a request that carries an ``Authorization`` header is judged by that
header alone. It must be exactly one ``Bearer <token>`` (RFC 6750, section 2.1: the scheme in any case,
one or more spaces, a b64token); anything else (``Basic``, ``Negotiate``, a bare ``Bearer``, two
headers) is ``Unauthenticated``, never a fall-back to the cookie. A header is therefore never a way to
skip the CSRF check that a cookie session needs.

Takes header values (strings), not requests, so the HTTP middleware and the routes share it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from consentry.errors import Unauthenticated

_BEARER = re.compile(r"[ \t]*Bearer +([A-Za-z0-9\-._~+/]+=*)[ \t]*", re.IGNORECASE | re.ASCII)
"""``credentials = "Bearer" 1*SP b64token`` (RFC 6750, 2.1); surrounding whitespace is not part of it."""

SESSION_COOKIE = "consentry_token"
"""The cookie the web pages keep the session's token in (``consentry.web.security``)."""
HOW = "send 'Authorization: Bearer <token>'"


def header_token(values: Sequence[str]) -> str | None:
    """The token of the ``Authorization`` header values of one request: ``None`` when there is no such
    header, ``Unauthenticated`` (field ``Authorization``) when there are several or the one is not a
    bearer credential."""
    if not values:
        return None
    if len(values) > 1:
        raise Unauthenticated(f"send one Authorization header, not {len(values)}", field="Authorization")
    match = _BEARER.fullmatch(values[0])
    if match is None:
        raise Unauthenticated(
            f"the Authorization header is not a bearer token; {HOW} (a request with an Authorization "
            "header is never authenticated by the session cookie)",
            field="Authorization",
        )
    return match.group(1)


def request_token(header_values: Sequence[str], cookie: str | None) -> str | None:
    """The token a request presents: its ``Authorization`` header's if it has one (see
    ``header_token``), else the session cookie's; ``None`` when it presents neither."""
    token = header_token(header_values)
    if token is not None:
        return token
    return cookie or None
