"""The settings catalog and the map from countries to jurisdiction groups.

Both ship as JSON data in the package; an operator replaces either with a file of the same shape
(``CONSENTRY_CATALOG_FILE``, ``CONSENTRY_JURISDICTIONS_FILE``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from consentry.errors import InvalidInput

RECIPIENTS = ("first_party", "third_party")
PURPOSES = ("train-ai", "ai-input", "ai-train", "search")
CATEGORIES = ("posts", "assistant_interactions", "profile")
DEFAULT_GROUP = "default"


@dataclass(frozen=True)
class Setting:
    """One data-sharing control an account holder can switch."""

    key: str
    label: str
    recipient: str
    purposes: tuple[str, ...]
    categories: tuple[str, ...]

    def covers(self, *, recipient: str, purpose: str, category: str) -> bool:
        """Whether this setting governs ``purpose`` use of ``category`` data by ``recipient``."""
        return self.recipient == recipient and purpose in self.purposes and category in self.categories


@dataclass(frozen=True)
class Catalog:
    """The ordered set of settings."""

    settings: tuple[Setting, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        """Setting keys in catalog order."""
        return tuple(s.key for s in self.settings)

    def get(self, key: str, *, field: str = "setting") -> Setting:
        """The setting named ``key``; ``InvalidInput`` naming ``field`` if there is none."""
        for setting in self.settings:
            if setting.key == key:
                return setting
        raise InvalidInput(f"unknown setting {key!r}; known: {', '.join(self.keys)}", field=field)

    def covering(self, *, recipient: str, purpose: str, category: str) -> tuple[Setting, ...]:
        """Every setting that must allow ``purpose`` use of ``category`` data by ``recipient``."""
        return tuple(
            s for s in self.settings if s.covers(recipient=recipient, purpose=purpose, category=category)
        )


def _read_json(path: Path | None, packaged: str) -> Any:
    try:
        if path is None:
            return json.loads(resources.files("consentry.consent").joinpath(packaged).read_text("utf-8"))
        return json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InvalidInput(f"cannot read {path or packaged}: {error}", field=str(path or packaged)) from error


def parse_catalog(data: Any) -> Catalog:
    """Validate catalog data (``{"settings": [...]}``) and build a ``Catalog``."""
    if not isinstance(data, dict) or not isinstance(data.get("settings"), list) or not data["settings"]:
        raise InvalidInput("a catalog is an object with a non-empty 'settings' list", field="settings")
    settings: list[Setting] = []
    for index, item in enumerate(data["settings"]):
        where = f"settings[{index}]"
        if not isinstance(item, dict):
            raise InvalidInput("each setting is an object", field=where)
        key = item.get("key")
        if not isinstance(key, str) or not key.isidentifier():
            raise InvalidInput("key must be an identifier", field=f"{where}.key")
        if any(s.key == key for s in settings):
            raise InvalidInput(f"duplicate setting {key!r}", field=f"{where}.key")
        if item.get("recipient") not in RECIPIENTS:
            raise InvalidInput(f"recipient must be one of {RECIPIENTS}", field=f"{where}.recipient")
        purposes = item.get("purposes")
        if not isinstance(purposes, list) or not purposes or any(p not in PURPOSES for p in purposes):
            raise InvalidInput(
                f"purposes must be a non-empty subset of {PURPOSES}", field=f"{where}.purposes"
            )
        categories = item.get("categories")
        if not isinstance(categories, list) or not categories or any(c not in CATEGORIES for c in categories):
            raise InvalidInput(
                f"categories must be a non-empty subset of {CATEGORIES}", field=f"{where}.categories"
            )
        label = item.get("label")
        if not isinstance(label, str) or not label.strip():
            raise InvalidInput("label must be a non-empty text", field=f"{where}.label")
        settings.append(Setting(key, label, item["recipient"], tuple(purposes), tuple(categories)))
    return Catalog(tuple(settings))


@lru_cache(maxsize=8)
def load_catalog(path: Path | None = None) -> Catalog:
    """The operator's catalog file if given, else the packaged default."""
    return parse_catalog(_read_json(path, "catalog.json"))


@dataclass(frozen=True)
class Jurisdictions:
    """Country code (ISO 3166-1 alpha-2) to jurisdiction group; anything unlisted is ``default``."""

    groups: dict[str, tuple[str, ...]]

    @property
    def names(self) -> tuple[str, ...]:
        """Every group name, ``default`` first."""
        return (DEFAULT_GROUP, *self.groups)

    def group_of(self, country: str | None) -> str:
        """The group of a country."""
        if country:
            upper = country.upper()
            for name, members in self.groups.items():
                if upper in members:
                    return name
        return DEFAULT_GROUP

    def country_map(self) -> dict[str, str]:
        """Every listed country and its group."""
        return {c: name for name, members in self.groups.items() for c in members}


@lru_cache(maxsize=8)
def load_jurisdictions(path: Path | None = None) -> Jurisdictions:
    """The operator's jurisdiction file if given, else the packaged default."""
    data = _read_json(path, "jurisdictions.json")
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, dict):
        raise InvalidInput("a jurisdictions file is an object with a 'groups' object", field="groups")
    parsed: dict[str, tuple[str, ...]] = {}
    for name, members in groups.items():
        if name == DEFAULT_GROUP or not isinstance(members, list):
            raise InvalidInput(f"group {name!r} must be a list of country codes", field=f"groups.{name}")
        if any(not isinstance(c, str) or len(c) != 2 or not c.isalpha() for c in members):
            raise InvalidInput(f"group {name!r} holds a code that is not ISO alpha-2", field=f"groups.{name}")
        parsed[name] = tuple(c.upper() for c in members)
    return Jurisdictions(parsed)
