"""The settings catalog and jurisdiction map: shipped defaults, operator replacements, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consentry.consent.catalog import load_catalog, load_jurisdictions
from consentry.errors import InvalidInput


def test_shipped_catalog_matches_the_design() -> None:
    catalog = load_catalog()
    assert catalog.keys == (
        "assistant_training_posts",
        "assistant_training_interactions",
        "assistant_realtime",
        "third_party_sharing",
    )
    third = catalog.get("third_party_sharing")
    assert third.recipient == "third_party" and set(third.purposes) == {"train-ai", "ai-input"}
    covering = catalog.covering(recipient="first_party", purpose="train-ai", category="posts")
    assert [s.key for s in covering] == ["assistant_training_posts"]
    groups = load_jurisdictions()
    assert (
        groups.group_of("de"),
        groups.group_of("GB"),
        groups.group_of("CH"),
        groups.group_of("US"),
        groups.group_of(None),
    ) == ("EEA", "UK", "CH", "default", "default")


def test_an_operator_catalog_replaces_the_shipped_one(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(
        json.dumps(
            {
                "settings": [
                    {
                        "key": "search_indexing",
                        "label": "Let search engines index me",
                        "recipient": "third_party",
                        "purposes": ["search"],
                        "categories": ["posts"],
                    }
                ]
            }
        )
    )
    assert load_catalog(path).keys == ("search_indexing",)


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("{not json", None),
        (json.dumps({"settings": []}), "settings"),
        (
            json.dumps(
                {
                    "settings": [
                        {
                            "key": "x y",
                            "label": "l",
                            "recipient": "first_party",
                            "purposes": ["train-ai"],
                            "categories": ["posts"],
                        }
                    ]
                }
            ),
            "settings[0].key",
        ),
        (
            json.dumps(
                {
                    "settings": [
                        {
                            "key": "x",
                            "label": "l",
                            "recipient": "anyone",
                            "purposes": ["train-ai"],
                            "categories": ["posts"],
                        }
                    ]
                }
            ),
            "settings[0].recipient",
        ),
        (
            json.dumps(
                {
                    "settings": [
                        {
                            "key": "x",
                            "label": "l",
                            "recipient": "first_party",
                            "purposes": ["mining"],
                            "categories": ["posts"],
                        }
                    ]
                }
            ),
            "settings[0].purposes",
        ),
    ],
)
def test_a_bad_catalog_file_is_refused(tmp_path: Path, content: str, field: str | None) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InvalidInput) as error:
        load_catalog(path)
    if field:
        assert error.value.field == field
