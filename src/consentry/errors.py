"""One exception tree for the whole domain.

Services raise these; the HTTP layer maps each base class to a status once, and the CLI prints the
message and exits non-zero. Nothing here knows about HTTP beyond the status number it carries.
An error may list several problems (``errors``, each a ``FieldError``); ``field`` and ``detail`` then
name the first::

    ConsentryError                 500  base of everything raised on purpose
    ├── InvalidInput               422  bad value; ``field`` names the offending input
    │   └── PayloadTooLarge        413
    ├── NotFound                   404
    │   └── Gone                   410  it existed but was deleted
    ├── Conflict                   409  the request clashes with the current state
    ├── Unauthenticated            401  missing, unknown or revoked credentials
    ├── Forbidden                  403  authenticated but not allowed
    ├── Unavailable                503  a service it needs (the database) cannot be reached; retry later
    └── IntegrityFailure           500  the ledger or a stored artefact fails verification
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One problem with one input: which (``field``, dotted) and what is wrong with it."""

    field: str
    message: str


class ConsentryError(Exception):
    """Base of every error Consentry raises on purpose."""

    status: int = 500
    title: str = "Internal error"

    def __init__(self, detail: str, *, field: str | None = None, errors: Sequence[FieldError] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.errors = tuple(errors)


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


class NotFound(ConsentryError):
    """The named thing does not exist (or is not visible to the caller)."""

    status = 404
    title = "Not found"


class Gone(NotFound):
    """The named thing existed but was deleted (a deleted post, a deleted account)."""

    status = 410
    title = "Gone"


class Conflict(ConsentryError):
    """The request clashes with the current state."""

    status = 409
    title = "Conflict"


class Unauthenticated(ConsentryError):
    """Credentials are missing, unknown or revoked."""

    status = 401
    title = "Unauthenticated"


class Forbidden(ConsentryError):
    """The caller is known but may not do this."""

    status = 403
    title = "Forbidden"


class Unavailable(ConsentryError):
    """A service the request needs (the database) cannot be reached now; ``retry_after`` is how many
    seconds to wait before trying again (the ``Retry-After`` header). Nothing was changed."""

    status = 503
    title = "Service unavailable"

    def __init__(self, detail: str, *, retry_after: int = 5, field: str | None = None) -> None:
        super().__init__(detail, field=field)
        self.retry_after = retry_after


class IntegrityFailure(ConsentryError):
    """Stored data failed verification (for example a broken ledger chain)."""

    status = 500
    title = "Integrity failure"

    def __init__(self, detail: str, *, seq: int | None = None, field: str | None = None) -> None:
        super().__init__(detail, field=field)
        self.seq = seq
