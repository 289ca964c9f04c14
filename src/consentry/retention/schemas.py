"""API and report shapes of the retention domain: rules, legal holds, plans and purge reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from consentry.ids import Id64


class RuleOutcome(BaseModel):
    """What one rule removes (a plan: would remove), per table, with a few example ids.

    ``removed``: rows deleted, per table. ``changed``: rows kept but altered (accounts anonymised, tokens
    revoked; ``links_cleared``: replies and quotes whose parent was purged, reported by runs only).
    ``held``: rows the rule would have removed but a legal hold kept. ``kept``: what the rule keeps by
    design (consent events).
    """

    rule: str
    description: str
    window: str | None
    cutoff: datetime | None
    removed: dict[str, int] = Field(default_factory=dict)
    changed: dict[str, int] = Field(default_factory=dict)
    examples: dict[str, list[int]] = Field(default_factory=dict)
    held: dict[str, int] = Field(default_factory=dict)
    kept: dict[str, int] = Field(default_factory=dict)
    note: str | None = None

    @property
    def total(self) -> int:
        """Rows this rule removes."""
        return sum(self.removed.values())


class RetentionPlan(BaseModel):
    """A dry run: what every rule would remove at ``at``; nothing is changed."""

    at: datetime
    source: Literal["database", "lake"]
    lake: str | None = None
    rules: dict[str, Any]
    holds: int
    outcomes: list[RuleOutcome]
    seconds: float

    @property
    def total(self) -> int:
        """Rows every rule together would remove."""
        return sum(outcome.total for outcome in self.outcomes)

    def outcome(self, rule: str) -> RuleOutcome:
        """The outcome of one rule."""
        return next(outcome for outcome in self.outcomes if outcome.rule == rule)


class RetentionReport(BaseModel):
    """The purge report of one ``retention apply`` run (also stored in ``retention_runs``)."""

    run_id: int
    at: datetime
    trigger: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    rules: dict[str, Any]
    holds: int
    outcomes: list[RuleOutcome]
    rows_removed: int
    revocations: int
    seconds: float
    rows_per_second: float | None
    error: str | None = None

    def outcome(self, rule: str) -> RuleOutcome:
        """The outcome of one rule."""
        return next(outcome for outcome in self.outcomes if outcome.rule == rule)


class RunOut(BaseModel):
    """A retention run as listed."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    trigger: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    rows_removed: int
    revocations: int
    error: str | None


class RunDetail(RunOut):
    """A retention run with the rules it applied and its purge report."""

    rules: dict[str, Any]
    report: dict[str, Any]


class HoldIn(BaseModel):
    """A new legal hold."""

    model_config = ConfigDict(extra="forbid")

    account_id: Id64
    reason: str = Field(min_length=1, max_length=2000)


class HoldOut(BaseModel):
    """A legal hold (active while ``released_at`` is null)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    account_id: int
    reason: str
    created_at: datetime
    created_by: str
    released_at: datetime | None
    released_by: str | None


class ApplyIn(BaseModel):
    """Options of a run through the API."""

    model_config = ConfigDict(extra="forbid")

    at: datetime | None = Field(default=None, description="Apply the windows as of this time (default now).")
