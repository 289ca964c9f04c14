"""What consent publishes inside the writer's transaction, for the domains that act on it.

The consent domain is the foundation: it knows nothing of the domains that consume its changes. When a
change opts accounts out of settings, the writer (``service.change_settings_many``, the bulk import)
publishes an ``OptOuts`` event to every subscriber, in the same session and before the caller commits,
so whatever a subscriber writes (the partners domain revokes released records) commits or rolls back
with the change itself.

Subscribers are registered once per process by the composition root (``consentry.wiring``), which every
entry point imports: the app factory, the command line and the worker. Consent fails closed: publishing
an event that has no subscriber raises ``IntegrityFailure``, so a process that forgot the wiring cannot
record an opt-out whose revocations would be lost; the caller's transaction rolls back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, TypeAlias

from consentry.errors import IntegrityFailure

if TYPE_CHECKING:  # annotations only: the command line imports this module at start-up
    import numpy as np
    from sqlalchemy.orm import Session

    from consentry.consent.catalog import Setting

Denied: TypeAlias = "Mapping[Setting, Sequence[int] | np.ndarray]"


class OptOuts:
    """Accounts whose latest choice for a setting became ``deny`` in the current transaction.

    The accounts are computed on first use (``denied``): a subscriber with nothing to do (no release
    holds any record) never pays for it, which matters to a bulk import of millions of events.
    """

    def __init__(self, denied: Denied | Callable[[], Denied], *, at: datetime | None = None) -> None:
        self._denied = denied
        self.at = at
        """When the change was recorded (a live write's time); ``None``: now."""

    def denied(self) -> Denied:
        """Per setting, the accounts that opted out of it in this transaction."""
        if callable(self._denied):
            self._denied = self._denied()
        return self._denied


Subscriber: TypeAlias = "Callable[[Session, OptOuts], None]"
_subscribers: list[Subscriber] = []


def subscribe(subscriber: Subscriber) -> None:
    """Call ``subscriber`` with every ``OptOuts`` published in this process (registered once)."""
    if subscriber not in _subscribers:
        _subscribers.append(subscriber)


def subscribers() -> tuple[Subscriber, ...]:
    """The subscribers registered in this process, in order of registration."""
    return tuple(_subscribers)


def publish(session: Session, event: OptOuts) -> None:
    """Hand ``event`` to every subscriber in the caller's transaction; with none, refuse (fail closed)."""
    if not _subscribers:
        raise IntegrityFailure(
            "no subscriber handles consent opt-outs in this process, so released records would not be "
            "revoked; the entry point must import consentry.wiring"
        )
    for subscriber in tuple(_subscribers):
        subscriber(session, event)
