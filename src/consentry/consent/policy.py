"""Policy versions as domain values: defaults per jurisdiction group, and which version applies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consentry.consent.catalog import DEFAULT_GROUP, Catalog, Jurisdictions
from consentry.errors import InvalidInput

VALUES = ("allow", "deny")
APPLIES_TO = ("all", "new_accounts")
WILDCARD = "*"


@dataclass(frozen=True)
class Policy:
    """One policy version, as evaluation sees it."""

    version: int
    effective_at: datetime
    applies_to: str
    defaults: Mapping[str, Mapping[str, str]]
    title: str = ""

    def applies(self, *, created_at: datetime, at: datetime) -> bool:
        """Whether this version applies at ``at`` to an account created at ``created_at``."""
        if self.effective_at > at:
            return False
        return self.applies_to == "all" or created_at >= self.effective_at

    def default(self, group: str, setting: str) -> str:
        """The default value of ``setting`` in ``group``; deny if the policy names none (fail closed)."""
        for name in (group, DEFAULT_GROUP):
            values = self.defaults.get(name)
            if values is not None:
                value = values.get(setting, values.get(WILDCARD))
                if value in VALUES:
                    return value
        return "deny"


def ordered(policies: Sequence[Policy]) -> list[Policy]:
    """Policies in the order later ones win: by effective time, then version."""
    return sorted(policies, key=lambda p: (p.effective_at, p.version))


def applicable(policies: Sequence[Policy], *, created_at: datetime, at: datetime) -> Policy | None:
    """The version that applies to an account at ``at``, or ``None`` (then consent is denied)."""
    chosen: Policy | None = None
    for policy in ordered(policies):
        if policy.applies(created_at=created_at, at=at):
            chosen = policy
    return chosen


def validate_defaults(
    defaults: Any, *, catalog: Catalog, jurisdictions: Jurisdictions
) -> dict[str, dict[str, str]]:
    """Check a policy's defaults: known groups and settings, allow/deny values, ``default`` covering all."""
    if not isinstance(defaults, dict) or not defaults:
        raise InvalidInput("defaults must map jurisdiction groups to settings", field="defaults")
    clean: dict[str, dict[str, str]] = {}
    for group, values in defaults.items():
        if group not in jurisdictions.names:
            raise InvalidInput(
                f"unknown jurisdiction group {group!r}; known: {', '.join(jurisdictions.names)}",
                field=f"defaults.{group}",
            )
        if not isinstance(values, dict) or not values:
            raise InvalidInput("each group maps settings (or '*') to allow/deny", field=f"defaults.{group}")
        for key, value in values.items():
            if key != WILDCARD:
                catalog.get(key, field=f"defaults.{group}.{key}")
            if value not in VALUES:
                raise InvalidInput(
                    f"value must be allow or deny, not {value!r}", field=f"defaults.{group}.{key}"
                )
        clean[group] = dict(values)
    base = clean.get(DEFAULT_GROUP)
    if base is None:
        raise InvalidInput("defaults must include the 'default' group", field="defaults.default")
    missing = [k for k in catalog.keys if k not in base and WILDCARD not in base]
    if missing:
        raise InvalidInput(
            f"the 'default' group gives no value for {', '.join(missing)}", field="defaults.default"
        )
    return clean
