"""What a new policy version would change, measured before it is added.

The candidate is evaluated against every account at its ``effective_at``, with and without it, using
the vectorised evaluation (explicit choices known now are taken into account). A change from deny to
allow for an account that exists before the candidate takes effect is a silent opt-in: refused unless
the operator says so explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pyarrow as pa

from consentry.consent.catalog import Jurisdictions
from consentry.consent.evaluate import evaluate_many, group_index, to_micros
from consentry.consent.policy import Policy, applicable


@dataclass(frozen=True)
class ImpactRow:
    """How many accounts of one jurisdiction group move from one value to the other for one setting."""

    setting: str
    group: str
    before: str
    after: str
    accounts: int


@dataclass(frozen=True)
class Impact:
    """The effect of a candidate policy version at the moment it would take effect."""

    effective_at: datetime
    accounts: int
    changes_defaults: bool
    silent_opt_ins: int
    rows: list[ImpactRow] = field(default_factory=list)
    changed_account_ids: list[int] = field(default_factory=list)

    @property
    def changed_accounts(self) -> int:
        """How many accounts see at least one setting change."""
        return len(self.changed_account_ids)


def changes_defaults(
    candidate: Policy, policies: Sequence[Policy], *, jurisdictions: Jurisdictions, settings: Sequence[str]
) -> bool:
    """Whether the candidate gives any group a default other than the version it follows does."""
    previous = applicable(policies, created_at=candidate.effective_at, at=candidate.effective_at)
    return any(
        candidate.default(group, key) != (previous.default(group, key) if previous else "deny")
        for group in jurisdictions.names
        for key in settings
    )


def measure_impact(
    *,
    candidate: Policy,
    policies: Sequence[Policy],
    accounts: pa.Table,
    events: pa.Table,
    settings: Sequence[str],
    jurisdictions: Jurisdictions,
) -> Impact:
    """Compare every account's effective consent at ``candidate.effective_at`` with and without it."""
    at = candidate.effective_at
    common = {"settings": list(settings), "at": at, "jurisdictions": jurisdictions}
    before = evaluate_many(accounts, events, policies=list(policies), **common)  # type: ignore[arg-type]
    after = evaluate_many(accounts, events, policies=[*policies, candidate], **common)  # type: ignore[arg-type]
    ids = np.asarray(accounts.column("account_id").to_numpy(), dtype=np.int64)
    groups = group_index(accounts.column("country"), jurisdictions)
    created = np.asarray(
        accounts.column("created_at").cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64
    )
    existing = created < to_micros(at)
    any_change = np.zeros(len(ids), dtype=bool)
    opt_in = np.zeros(len(ids), dtype=bool)
    rows: list[ImpactRow] = []
    for key in settings:
        was = np.asarray(before.column(key).to_numpy(zero_copy_only=False), dtype=bool)
        now = np.asarray(after.column(key).to_numpy(zero_copy_only=False), dtype=bool)
        changed = was != now
        any_change |= changed
        opt_in |= changed & now & existing
        for direction, mask in (("allow", changed & now), ("deny", changed & ~now)):
            counts = np.bincount(groups[mask], minlength=len(jurisdictions.names))
            for g, count in enumerate(counts):
                if count:
                    previous = "deny" if direction == "allow" else "allow"
                    rows.append(ImpactRow(key, jurisdictions.names[g], previous, direction, int(count)))
    return Impact(
        effective_at=at,
        accounts=len(ids),
        changes_defaults=changes_defaults(
            candidate, policies, jurisdictions=jurisdictions, settings=settings
        ),
        silent_opt_ins=int(opt_in.sum()),
        rows=rows,
        changed_account_ids=ids[any_change].tolist(),
    )
