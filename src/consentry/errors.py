"""One exception tree for the whole domain.

Services raise these; the HTTP layer renders every one in one place (``consentry.problems``: RFC 9457
problem+json), and the CLI prints the message and exits non-zero. An error carries its status, and
the response fields that go with it: ``headers`` (``WWW-Authenticate`` for 401, ``Retry-After`` for
503 and 429, ``Content-Range`` for 416) and ``extensions`` (extra members of the problem document).
An error may list several problems (``errors``, each a ``FieldError``); ``field`` and ``detail`` then
name the first::

    ConsentryError                 500  base of everything raised on purpose
    ├── InvalidInput               422  bad value; ``field`` names the offending input
    │   ├── PayloadTooLarge        413
    │   └── RangeNotSatisfiable    416  ``Content-Range: bytes */size``
    ├── NotFound                   404
    │   └── Gone                   410  it existed but was deleted
    ├── MethodNotAllowed           405  ``Allow`` lists the methods the path has
    ├── Conflict                   409  the request clashes with the current state
    ├── Unauthenticated            401  missing, unknown or revoked credentials (``WWW-Authenticate``)
    │   └── SignInRequired         401  a web page needs a signed-in visitor (pages redirect to sign-in)
    ├── Forbidden                  403  authenticated but not allowed
    ├── PaymentRequired            402  the content has a price the request did not accept
    ├── TooManyRequests            429  a quota is used up (``Retry-After``, ``RateLimit``)
    ├── Unavailable                503  a service it needs (the database) cannot be reached; retry later
    └── IntegrityFailure           500  the ledger or a stored artefact fails verification
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One problem with one input: which (``field``, dotted) and what is wrong with it."""

    field: str
    message: str


class ConsentryError(Exception):
    """Base of every error Consentry raises on purpose."""

    status: int = 500
    title: str = "Internal error"
    problem_type: str | None = None
    """The problem type's last part (``urn:consentry:problem:<problem_type>``); default the title's words."""

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        errors: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
        problem_type: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.errors = tuple(errors)
        self.headers: dict[str, str] = dict(headers or {})
        """Response headers that go with the error."""
        self.extensions: dict[str, Any] = dict(extensions or {})
        """Extra members of the problem document (RFC 9457 extensions)."""
        if problem_type is not None:
            self.problem_type = problem_type


class InvalidInput(ConsentryError):
    """A value supplied by the caller is not acceptable; nothing was changed."""

    status = 422
    title = "Invalid input"

    @classmethod
    def of(cls, errors: Sequence[FieldError]) -> InvalidInput:
        """One error listing every problem found; ``field`` and ``detail`` name the first."""
        if not errors:
            raise ValueError("InvalidInput.of needs at least one problem")
        first = errors[0]
        more = f" (and {len(errors) - 1} more, see errors)" if len(errors) > 1 else ""
        return cls(f"{first.field}: {first.message}{more}", field=first.field, errors=errors)


class PayloadTooLarge(InvalidInput):
    """The request body is larger than the configured limit."""

    status = 413
    title = "Payload too large"


class RangeNotSatisfiable(InvalidInput):
    """A byte range that selects nothing of a ``size``-byte file (``Content-Range: bytes */size``)."""

    status = 416
    title = "Range not satisfiable"

    def __init__(
        self, detail: str, *, size: int, field: str | None = "Range", headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail, field=field, headers={**(headers or {}), "Content-Range": f"bytes */{size}"})
        self.size = size


class NotFound(ConsentryError):
    """The named thing does not exist (or is not visible to the caller)."""

    status = 404
    title = "Not found"


class Gone(NotFound):
    """The named thing existed but was deleted (a deleted post, a deleted account)."""

    status = 410
    title = "Gone"


class MethodNotAllowed(ConsentryError):
    """The path exists but not with this method; ``allow`` lists those it has (the ``Allow`` header)."""

    status = 405
    title = "Method not allowed"

    def __init__(self, detail: str, *, allow: Sequence[str]) -> None:
        super().__init__(detail, headers={"Allow": ", ".join(allow)})


class Conflict(ConsentryError):
    """The request clashes with the current state."""

    status = 409
    title = "Conflict"


class Unauthenticated(ConsentryError):
    """Credentials are missing, unknown or revoked."""

    status = 401
    title = "Unauthenticated"

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        errors: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            detail,
            field=field,
            errors=errors,
            headers={"WWW-Authenticate": "Bearer", **(headers or {})},
            extensions=extensions,
        )


class SignInRequired(Unauthenticated):
    """A web page needs a signed-in visitor; ``reason`` is ``"expired"`` when a session ran out. Pages
    answer it with a redirect to the sign-in page (``consentry.web``), the API like any 401."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(
            "Your session has ended. Sign in again."
            if reason
            else "You are not signed in. Sign in to continue."
        )
        self.reason = reason


class Forbidden(ConsentryError):
    """The caller is known but may not do this."""

    status = 403
    title = "Forbidden"


class PaymentRequired(ConsentryError):
    """The content has a price the request did not accept (the metering ``pay`` mode)."""

    status = 402
    title = "Payment Required"


class TooManyRequests(ConsentryError):
    """A quota is used up; ``retry_after`` seconds until the request may succeed (``Retry-After``)."""

    status = 429
    title = "Too Many Requests"

    def __init__(
        self,
        detail: str,
        *,
        retry_after: int,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
        problem_type: str | None = None,
    ) -> None:
        super().__init__(
            detail,
            headers={"Retry-After": str(retry_after), **(headers or {})},
            extensions=extensions,
            problem_type=problem_type,
        )
        self.retry_after = retry_after


class Unavailable(ConsentryError):
    """A service the request needs (the database) cannot be reached now; ``retry_after`` is how many
    seconds to wait before trying again (the ``Retry-After`` header). Nothing was changed."""

    status = 503
    title = "Service unavailable"

    def __init__(self, detail: str, *, retry_after: int = 5, field: str | None = None) -> None:
        super().__init__(detail, field=field, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class IntegrityFailure(ConsentryError):
    """Stored data failed verification (for example a broken ledger chain)."""

    status = 500
    title = "Integrity failure"

    def __init__(self, detail: str, *, seq: int | None = None, field: str | None = None) -> None:
        super().__init__(detail, field=field)
        self.seq = seq
