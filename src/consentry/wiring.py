"""The composition root: connects the domains that must not import each other, once per process.

Consent is the foundation and publishes what changed (``consent.events``); the domains that act on it
subscribe here, not in consent. Every entry point imports this module before it serves anything: the app
factory (``consentry.api``), the command line (``consentry.cli``, which also starts the worker) and the
worker's job handlers (``consentry.job_handlers``); ``tests/test_architecture.py`` checks each one. A
process that does not is refused its first opt-out (``consent.events.publish`` fails closed) rather than
losing the revocations it owes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from consentry.consent import events

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def revoke_opt_outs(session: Session, change: events.OptOuts) -> None:
    """Opt-outs revoke what published releases hold of the accounts (``partners.revocations``)."""
    # loaded on the first opt-out, not at start-up: the command line starts without NumPy's lineage code
    from consentry.partners.revocations import revoke_opt_outs as revoke

    revoke(session, change)


events.subscribe(revoke_opt_outs)
