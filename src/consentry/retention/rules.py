"""Retention rules: how long each category of data is kept, read from configuration.

Durations are ISO 8601 date durations (``P30D``, ``P6W``, ``P18M``, ``P1Y6M``) or a whole number of days
(``30`` or ``"30"``); ``null`` means "keep" (the rule never removes anything). Months and years are
calendar months and years: 18 months before 2026-08-31 is 2025-02-28 (the day is clamped to the month's
end). Negative or unreadable durations are ``InvalidInput`` naming the field (``retention.posts.
after_deletion``), and nothing runs.

A record is inside its window while ``at - window <= start`` (the edge is inside, as in the dataset
builder's ``Retention``): it is removed when ``start < cutoff``, ``cutoff = at - window``.

The rules, their defaults, and what they remove (see ``docs/retention.md``)::

    posts                   after_deletion P30D, max_age null   deleted posts (and likes/reposts of them)
    assistant_interactions  after_deletion P30D, max_age null   deleted assistant chats
    deactivated_accounts    after_deactivation P30D             everything of the account; the row is
                                                                anonymised and becomes ``deleted``
    access_log              max_age P18M                        metering rows by their ``minute``
    subject_mappings        (none: immediate)                   subject-key mapping of deleted accounts
    consent_events          (none: life of the ledger)          nothing; reported only

The configuration file (``CONSENTRY_RETENTION_FILE``) is a JSON object with the same shape as
``Rules.describe()``; categories and keys it leaves out keep their defaults.
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from consentry.errors import InvalidInput

RULES: tuple[str, ...] = (
    "posts",
    "assistant_interactions",
    "deactivated_accounts",
    "access_log",
    "subject_mappings",
    "consent_events",
)
"""Rules in the order they run; a record removed by one rule is not counted again by a later one."""

DESCRIPTIONS: dict[str, str] = {
    "posts": "posts deleted longer ago than after_deletion (or older than max_age), with their likes and "
    "reposts",
    "assistant_interactions": "assistant interactions deleted longer ago than after_deletion (or older "
    "than max_age)",
    "deactivated_accounts": "everything of accounts deactivated longer ago than after_deactivation; the "
    "account row is anonymised and marked deleted",
    "access_log": "access-log rows whose minute is older than max_age",
    "subject_mappings": "ledger subject-key mappings of deleted accounts (their events become anonymous)",
    "consent_events": "consent events are kept for the life of the ledger (never removed)",
}

_ISO = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$")
_DAYS = re.compile(r"^\d+$")


@dataclass(frozen=True, order=True)
class Duration:
    """A non-negative calendar duration: years, months and days."""

    years: int = 0
    months: int = 0
    days: int = 0

    def __str__(self) -> str:
        parts = [f"{self.years}Y" if self.years else "", f"{self.months}M" if self.months else ""]
        if self.days or not (self.years or self.months):
            parts.append(f"{self.days}D")
        return "P" + "".join(parts)

    def before(self, at: datetime) -> datetime:
        """``at`` minus this duration (calendar months, the day clamped to the month's end)."""
        months = at.year * 12 + (at.month - 1) - (self.years * 12 + self.months)
        year, month = divmod(months, 12)
        month += 1
        if year < 1:
            raise InvalidInput(f"{self} before {at.isoformat()} is before year 1", field="at")
        day = min(at.day, calendar.monthrange(year, month)[1])
        return at.replace(year=year, month=month, day=day) - timedelta(days=self.days)


def parse_duration(value: object, *, field: str) -> Duration:
    """A duration from ``P30D``-style ISO 8601 text or a whole number of days; ``InvalidInput`` naming
    ``field`` when it is negative or unreadable."""
    if isinstance(value, bool) or value is None:
        raise InvalidInput(f"{field} must be a duration such as P30D, P18M or 30 (days)", field=field)
    if isinstance(value, int):
        if value < 0:
            raise InvalidInput(f"{field} must not be negative, got {value}", field=field)
        return Duration(days=value)
    if not isinstance(value, str):
        raise InvalidInput(
            f"{field} must be a duration such as P30D, P18M or 30 (days), not {value!r}", field=field
        )
    text = value.strip().upper()
    if text.startswith("-"):
        raise InvalidInput(f"{field} must not be negative, got {value!r}", field=field)
    if _DAYS.match(text):
        return Duration(days=int(text))
    match = _ISO.match(text)
    if match is None or text == "P":
        raise InvalidInput(
            f"{field}: {value!r} is not a duration; use ISO 8601 years, months, weeks or days "
            "(P30D, P6W, P18M, P1Y6M) or a whole number of days",
            field=field,
        )
    years, months, weeks, days = (int(part) if part else 0 for part in match.groups())
    return Duration(years=years, months=months, days=weeks * 7 + days)


def _optional(value: object, *, field: str) -> Duration | None:
    return None if value is None else parse_duration(value, field=field)


def _show(duration: Duration | None) -> str | None:
    return None if duration is None else str(duration)


P30D = Duration(days=30)
P18M = Duration(months=18)

# category -> key -> attribute of Rules
_LAYOUT: dict[str, dict[str, str]] = {
    "posts": {"after_deletion": "posts_after_deletion", "max_age": "posts_max_age"},
    "assistant_interactions": {
        "after_deletion": "interactions_after_deletion",
        "max_age": "interactions_max_age",
    },
    "deactivated_accounts": {"after_deactivation": "deactivated_after"},
    "access_log": {"max_age": "access_log_max_age"},
}
_FIXED = {
    "consent_events": "consent events are kept for the life of the ledger; they cannot be given a window",
    "subject_mappings": "subject mappings are removed when an account is deleted; they have no window",
}


@dataclass(frozen=True)
class Cutoffs:
    """Per rule, the time before which records are removed (``None``: the rule removes nothing)."""

    at: datetime
    posts_deleted: datetime | None
    posts_created: datetime | None
    interactions_deleted: datetime | None
    interactions_created: datetime | None
    deactivated: datetime | None
    access_log: datetime | None


@dataclass(frozen=True)
class Rules:
    """The retention rules in force. ``None`` keeps records of that kind forever."""

    posts_after_deletion: Duration | None = P30D
    posts_max_age: Duration | None = None
    interactions_after_deletion: Duration | None = P30D
    interactions_max_age: Duration | None = None
    deactivated_after: Duration | None = P30D
    access_log_max_age: Duration | None = P18M
    source: str = field(default="defaults", compare=False)

    @classmethod
    def from_mapping(cls, data: object, *, source: str = "configuration") -> Rules:
        """Rules from the JSON shape of ``describe()``; missing categories or keys keep the defaults."""
        if not isinstance(data, Mapping):
            raise InvalidInput("retention rules must be a JSON object of categories", field="retention")
        values: dict[str, Any] = {}
        for category, body in data.items():
            where = f"retention.{category}"
            if category in _FIXED:
                raise InvalidInput(_FIXED[category], field=where)
            if category not in _LAYOUT:
                known = ", ".join(_LAYOUT)
                raise InvalidInput(f"unknown retention category {category!r} (known: {known})", field=where)
            if not isinstance(body, Mapping):
                raise InvalidInput(f"{where} must be an object", field=where)
            for key, value in body.items():
                attribute = _LAYOUT[category].get(str(key))
                if attribute is None:
                    known = ", ".join(_LAYOUT[category])
                    raise InvalidInput(
                        f"unknown key {key!r} for {category} (known: {known})", field=f"{where}.{key}"
                    )
                values[attribute] = _optional(value, field=f"{where}.{key}")
        return cls(**values, source=source)

    def describe(self) -> dict[str, Any]:
        """The rules as JSON: per category, each window as ISO 8601 text (``null``: keep)."""
        shown: dict[str, Any] = {
            category: {key: _show(getattr(self, attribute)) for key, attribute in keys.items()}
            for category, keys in _LAYOUT.items()
        }
        shown["subject_mappings"] = {"after_deletion": "P0D"}
        shown["consent_events"] = {"max_age": None}
        return shown

    def cutoffs(self, at: datetime) -> Cutoffs:
        """The cutoff of every rule at ``at``."""

        def before(duration: Duration | None) -> datetime | None:
            return None if duration is None else duration.before(at)

        return Cutoffs(
            at=at,
            posts_deleted=before(self.posts_after_deletion),
            posts_created=before(self.posts_max_age),
            interactions_deleted=before(self.interactions_after_deletion),
            interactions_created=before(self.interactions_max_age),
            deactivated=before(self.deactivated_after),
            access_log=before(self.access_log_max_age),
        )

    def windows(self) -> dict[str, str | None]:
        """A one-line description of each rule's window(s), for reports."""
        posts = _pair(self.posts_after_deletion, self.posts_max_age)
        interactions = _pair(self.interactions_after_deletion, self.interactions_max_age)
        return {
            "posts": posts,
            "assistant_interactions": interactions,
            "deactivated_accounts": _keep_or(self.deactivated_after, "after deactivation"),
            "access_log": _keep_or(self.access_log_max_age, "after its minute"),
            "subject_mappings": "at deletion",
            "consent_events": "life of the ledger",
        }


def _keep_or(duration: Duration | None, what: str) -> str:
    return "keep" if duration is None else f"{duration} {what}"


def _pair(after_deletion: Duration | None, max_age: Duration | None) -> str:
    parts = [f"{after_deletion} after deletion"] if after_deletion is not None else []
    if max_age is not None:
        parts.append(f"{max_age} after creation")
    return ", ".join(parts) or "keep"


DEFAULT_RULES = Rules()


def load_rules_file(path: Path) -> Rules:
    """Rules from a JSON file; ``InvalidInput`` (field ``retention_file``) when it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidInput(
            f"cannot read retention file {path}: {error.strerror}", field="retention_file"
        ) from error
    except json.JSONDecodeError as error:
        raise InvalidInput(f"retention file {path} is not JSON: {error}", field="retention_file") from error
    return Rules.from_mapping(data, source=str(path))


def load_rules(retention_file: Path | None) -> Rules:
    """The rules in force: the file's when configured, otherwise the defaults."""
    return DEFAULT_RULES if retention_file is None else load_rules_file(retention_file)
