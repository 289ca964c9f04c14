"""Per-post signals from effective values (pure functions): every combination, and failing closed."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import http_sf
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consentry.consent.catalog import Catalog, load_catalog, parse_catalog
from consentry.signals import (
    RESTRICTIVE,
    Usage,
    covering_settings,
    most_restrictive,
    restrictive_headers,
    signal_headers,
    usage_of,
)
from consentry.signals.headers import usages_from_table

# third-party settings covering posts: tp_train (train-ai), tp_input (ai-input), tp_both (both);
# the others must never matter: first-party ones, and a third-party one that does not cover posts
SPLIT = parse_catalog(
    {
        "settings": [
            {
                "key": "fp_train",
                "label": "x",
                "recipient": "first_party",
                "purposes": ["train-ai"],
                "categories": ["posts"],
            },
            {
                "key": "fp_input",
                "label": "x",
                "recipient": "first_party",
                "purposes": ["ai-input"],
                "categories": ["posts"],
            },
            {
                "key": "tp_train",
                "label": "x",
                "recipient": "third_party",
                "purposes": ["train-ai"],
                "categories": ["posts"],
            },
            {
                "key": "tp_input",
                "label": "x",
                "recipient": "third_party",
                "purposes": ["ai-input"],
                "categories": ["posts"],
            },
            {
                "key": "tp_both",
                "label": "x",
                "recipient": "third_party",
                "purposes": ["train-ai", "ai-input"],
                "categories": ["posts", "profile"],
            },
            {
                "key": "tp_profile",
                "label": "x",
                "recipient": "third_party",
                "purposes": ["train-ai"],
                "categories": ["profile"],
            },
        ]
    }
)
TRAIN_KEYS = ("tp_train", "tp_both")
INPUT_KEYS = ("tp_input", "tp_both")
VALUE = st.sampled_from(["allow", "deny", True, False, None, "ALLOW", "yes", 1])


def parsed(headers: Mapping[str, str]) -> dict[str, str]:
    """The Content-Usage header through a real structured-field parser: label -> token."""
    members: Any = http_sf.parse(headers["Content-Usage"].encode(), tltype="dictionary")
    assert isinstance(members, dict)
    return {label: str(member[0]) for label, member in members.items()}


def expected(values: Mapping[str, object], keys: tuple[str, ...]) -> bool:
    return all(values.get(k) is True or values.get(k) == "allow" for k in keys)


def check(headers: Mapping[str, str], *, train: bool, ai_input: bool) -> None:
    assert parsed(headers) == {"train-ai": "y" if train else "n", "ai-use": "y" if ai_input else "n"}
    if train:
        assert "X-Robots-Tag" not in headers
    else:
        assert headers["X-Robots-Tag"] == "noai, noimageai"
    assert set(headers) <= {"Content-Usage", "X-Robots-Tag"}


def test_default_catalog_third_party_sharing_decides_both() -> None:
    catalog = load_catalog()
    assert covering_settings(catalog) == {
        "train-ai": ("third_party_sharing",),
        "ai-input": ("third_party_sharing",),
    }
    allow_first_party = {"assistant_training_posts": "allow", "assistant_realtime": "allow"}
    assert signal_headers({"third_party_sharing": "allow"}, catalog=catalog) == {
        "Content-Usage": "train-ai=y, ai-use=y"
    }
    assert signal_headers({"third_party_sharing": "deny", **allow_first_party}, catalog=catalog) == {
        "Content-Usage": "train-ai=n, ai-use=n",
        "X-Robots-Tag": "noai, noimageai",
    }


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("ai_input", [True, False])
def test_each_combination(train: bool, ai_input: bool) -> None:
    values = {
        "tp_train": "allow" if train else "deny",
        "tp_input": "allow" if ai_input else "deny",
        "tp_both": "allow",
        "fp_train": "deny",
        "fp_input": "deny",
        "tp_profile": "deny",
    }
    headers = signal_headers(values, catalog=SPLIT)
    check(headers, train=train, ai_input=ai_input)
    assert headers["Content-Usage"] == f"train-ai={'y' if train else 'n'}, ai-use={'y' if ai_input else 'n'}"


@given(st.dictionaries(st.sampled_from([s.key for s in SPLIT.settings]), VALUE))
def test_random_values_match_the_covering_settings(values: dict[str, object]) -> None:
    check(
        signal_headers(values, catalog=SPLIT),
        train=expected(values, TRAIN_KEYS),
        ai_input=expected(values, INPUT_KEYS),
    )


def test_missing_values_and_strange_values_deny() -> None:
    check(signal_headers({}, catalog=SPLIT), train=False, ai_input=False)
    check(signal_headers({"tp_train": "Allow", "tp_both": "y"}, catalog=SPLIT), train=False, ai_input=False)


def test_no_covering_setting_denies() -> None:
    first_party_only = Catalog(tuple(s for s in SPLIT.settings if s.recipient == "first_party"))
    values = dict.fromkeys(first_party_only.keys, "allow")
    assert covering_settings(first_party_only) == {"train-ai": (), "ai-input": ()}
    assert signal_headers(values, catalog=first_party_only) == restrictive_headers()


class Exploding(Mapping[str, object]):
    def __getitem__(self, key: str) -> object:
        raise RuntimeError("storage failed")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("storage failed")

    def __len__(self) -> int:
        return 1


def test_errors_fail_closed() -> None:
    assert signal_headers(Exploding(), catalog=SPLIT) == restrictive_headers()
    assert usage_of(Exploding(), catalog=SPLIT) is RESTRICTIVE
    assert restrictive_headers() == {
        "Content-Usage": "train-ai=n, ai-use=n",
        "X-Robots-Tag": "noai, noimageai",
    }


@given(st.lists(st.builds(Usage, st.booleans(), st.booleans()), max_size=6))
def test_most_restrictive_combines_per_purpose(usages: list[Usage]) -> None:
    combined = most_restrictive(usages)
    assert combined.train_ai == (bool(usages) and all(u.train_ai for u in usages))
    assert combined.ai_input == (bool(usages) and all(u.ai_input for u in usages))


def test_usages_from_an_evaluation_table() -> None:
    table = pa.table(
        {
            "account_id": pa.array([1, 2, 3, 4], pa.int64()),
            "reason": pa.array([0, 0, 0, 1], pa.int8()),
            "tp_train": pa.array([True, True, False, None]),
            "tp_input": pa.array([True, False, True, True]),
            "tp_both": pa.array([True, True, True, True]),
        }
    )
    usages = usages_from_table(table, catalog=SPLIT, author_ids=[1, 2, 3, 4, 5])
    assert usages == {
        1: Usage(train_ai=True, ai_input=True),
        2: Usage(train_ai=True, ai_input=False),
        3: Usage(train_ai=False, ai_input=True),
        4: Usage(train_ai=False, ai_input=True),
        5: RESTRICTIVE,  # not in the table
    }
    without_column = table.drop_columns(["tp_input"])
    assert usages_from_table(without_column, catalog=SPLIT, author_ids=[1])[1] == Usage(True, False)
