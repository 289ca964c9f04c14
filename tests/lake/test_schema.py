"""The data contract module matches DESIGN.md's table exactly and compares types as Parquet stores them."""

from __future__ import annotations

import pyarrow as pa
import pytest

from consentry.lake import schema
from consentry.lake.generate import OTHER_COUNTRIES, REGULATED_COUNTRIES

T = "timestamp"
# DESIGN.md, "Data contract": folder -> [(column, type, nullable)]
CONTRACT = {
    "accounts": [
        ("account_id", "int64", False),
        ("handle", "string", False),
        ("created_at", T, False),
        ("country", "string", False),
        ("birth_year", "int16", True),
        ("protected", "bool", False),
        ("status", "string", False),
        ("status_changed_at", T, True),
    ],
    "posts": [
        ("post_id", "int64", False),
        ("author_id", "int64", False),
        ("created_at", T, False),
        ("text", "string", False),
        ("visibility", "string", False),
        ("reply_to", "int64", True),
        ("quote_of", "int64", True),
        ("media", "string", False),
        ("deleted_at", T, True),
    ],
    "assistant_interactions": [
        ("interaction_id", "int64", False),
        ("account_id", "int64", False),
        ("created_at", T, False),
        ("prompt", "string", False),
        ("response", "string", False),
        ("deleted_at", T, True),
    ],
    "blocks": [("blocker_id", "int64", False), ("blocked_id", "int64", False), ("created_at", T, False)],
    "follows": [("follower_id", "int64", False), ("followee_id", "int64", False), ("created_at", T, False)],
    "consent_events": [
        ("account_id", "int64", False),
        ("setting", "string", False),
        ("value", "string", False),
        ("source", "string", False),
        ("recorded_at", T, False),
    ],
}
TYPES = {"int64": pa.int64(), "int16": pa.int16(), "string": pa.string(), "bool": pa.bool_()}


def test_folders_and_columns_are_exactly_the_contract() -> None:
    assert [folder.name for folder in schema.FOLDERS] == list(CONTRACT)
    for folder in schema.FOLDERS:
        assert [(c.name, c.nullable) for c in folder.columns] == [
            (n, null) for n, _, null in CONTRACT[folder.name]
        ]
        for column, (_, kind, _) in zip(folder.columns, CONTRACT[folder.name], strict=True):
            expected = pa.timestamp("us", tz="UTC") if kind == T else TYPES[kind]
            assert column.type == expected, (folder.name, column.name)


def test_arrow_schema_carries_names_types_and_nullability() -> None:
    arrow = schema.ACCOUNTS.schema
    assert arrow.names == list(schema.ACCOUNTS.column_names)
    assert arrow.field("birth_year").type == pa.int16()
    assert arrow.field("birth_year").nullable
    assert not arrow.field("account_id").nullable
    assert arrow.field("created_at").type == pa.timestamp("us", tz="UTC")


def test_enumerations() -> None:
    assert schema.ACCOUNT_STATUSES == ("active", "deactivated", "deleted")
    assert schema.POST_VISIBILITIES == ("public", "followers")
    assert schema.MEDIA_KINDS == ("none", "image", "video")
    assert schema.CONSENT_VALUES == ("allow", "deny")
    assert schema.CONSENT_SOURCES == ("web", "ios", "android", "api", "gpc", "admin")
    assert schema.SETTING_KEYS == (
        "assistant_training_posts",
        "assistant_training_interactions",
        "assistant_realtime",
        "third_party_sharing",
    )
    assert schema.POSTS.column("media").allowed == frozenset(schema.MEDIA_KINDS)
    assert schema.CONSENT_EVENTS.column("source").allowed == frozenset(schema.CONSENT_SOURCES)
    assert schema.ACCOUNTS.column("birth_year").allowed is None


def test_country_codes_are_iso_3166_alpha_2() -> None:
    assert len(schema.COUNTRY_CODES) == 249
    assert all(len(code) == 2 and code.isupper() for code in schema.COUNTRY_CODES)
    assert {"DE", "GB", "CH", "US", "NO", "LI", "IS"} <= schema.COUNTRY_CODES
    assert {"UK", "EU", "XK"}.isdisjoint(schema.COUNTRY_CODES)
    assert set(REGULATED_COUNTRIES) | set(OTHER_COUNTRIES) <= schema.COUNTRY_CODES


def test_references_name_existing_folders_and_columns() -> None:
    for folder in schema.FOLDERS:
        for reference in folder.references:
            assert reference.column in folder.column_names
            target = schema.FOLDERS_BY_NAME[reference.target]
            assert reference.target_column in target.column_names
            assert (reference.target_column,) in target.keys


@pytest.mark.parametrize(
    ("expected", "actual", "matches"),
    [
        (pa.string(), pa.string(), True),
        (pa.string(), pa.large_string(), True),
        (pa.string(), pa.dictionary(pa.int32(), pa.string()), True),
        (pa.string(), pa.binary(), False),
        (pa.int64(), pa.int64(), True),
        (pa.int64(), pa.int32(), False),
        (pa.int64(), pa.string(), False),
        (pa.int16(), pa.int64(), False),
        (schema.TIMESTAMP, pa.timestamp("us", tz="UTC"), True),
        (schema.TIMESTAMP, pa.timestamp("us", tz="+00:00"), True),
        (schema.TIMESTAMP, pa.timestamp("us"), False),
        (schema.TIMESTAMP, pa.timestamp("ns", tz="UTC"), False),
        (schema.TIMESTAMP, pa.timestamp("ms", tz="UTC"), False),
        (schema.TIMESTAMP, pa.int64(), False),
    ],
)
def test_type_matches_compares_storage_types(
    expected: pa.DataType, actual: pa.DataType, matches: bool
) -> None:
    assert schema.type_matches(expected, actual) is matches


def test_describe_type() -> None:
    assert schema.describe_type(schema.TIMESTAMP) == "timestamp[us, UTC]"
    assert schema.describe_type(pa.timestamp("ns")) == "timestamp[ns, no time zone]"
    assert schema.describe_type(pa.int64()) == "int64"
