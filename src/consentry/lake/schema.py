"""The data contract: the one place naming the lake's folders, columns, Arrow types and allowed values.

A lake is a folder holding one sub-folder per table (``accounts/``, ``posts/``, ...), each with any number
of Parquet files. Everything else in Consentry (the validator, the generator, the exporter, the dataset
builder) reads names and types from here. ``docs/data-contract.md`` explains each column.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")
"""Every timestamp of the contract: microseconds since the epoch, UTC."""

ACCOUNT_STATUSES: tuple[str, ...] = ("active", "deactivated", "deleted")
POST_VISIBILITIES: tuple[str, ...] = ("public", "followers")
MEDIA_KINDS: tuple[str, ...] = ("none", "image", "video")
CONSENT_VALUES: tuple[str, ...] = ("allow", "deny")
CONSENT_SOURCES: tuple[str, ...] = ("web", "ios", "android", "api", "gpc", "admin")
SETTING_KEYS: tuple[str, ...] = (
    "assistant_training_posts",
    "assistant_training_interactions",
    "assistant_realtime",
    "third_party_sharing",
)
"""Setting keys of the default catalog (``consent_events.setting``)."""

COUNTRY_CODES: frozenset[str] = frozenset((
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ", "BA",
    "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT", "BV",
    "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU",
    "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES",
    "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM",
    "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM", "HN", "HR", "HT", "HU", "ID", "IE",
    "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP", "KE", "KG", "KH", "KI", "KM",
    "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY",
    "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT",
    "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU",
    "NZ", "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA",
    "RE", "RO", "RS", "RU", "RW", "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM",
    "SN", "SO", "SR", "SS", "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL",
    "TM", "TN", "TO", "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE",
    "VG", "VI", "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
))  # fmt: skip
"""The 249 officially assigned ISO 3166-1 alpha-2 codes (``accounts.country``)."""


@dataclass(frozen=True)
class Column:
    """One column of a folder: name, Arrow type, whether nulls are allowed, and its allowed values."""

    name: str
    type: pa.DataType
    nullable: bool = False
    allowed: frozenset[str] | None = None
    doc: str = ""


@dataclass(frozen=True)
class Reference:
    """``folder.column`` must name an existing ``target.target_column`` (nulls are not checked)."""

    column: str
    target: str
    target_column: str


@dataclass(frozen=True)
class Folder:
    """One table of the lake: a folder of Parquet files sharing these columns."""

    name: str
    columns: tuple[Column, ...]
    keys: tuple[tuple[str, ...], ...] = ()
    references: tuple[Reference, ...] = ()
    doc: str = ""

    def column(self, name: str) -> Column:
        """The column called ``name``."""
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    @property
    def column_names(self) -> tuple[str, ...]:
        """Column names in contract order."""
        return tuple(column.name for column in self.columns)

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema writers use for this folder."""
        return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns])


def _enum(values: tuple[str, ...]) -> frozenset[str]:
    return frozenset(values)


ACCOUNTS = Folder(
    name="accounts",
    doc="One row per account holder, whatever its status.",
    columns=(
        Column("account_id", pa.int64(), doc="Unique id of the account."),
        Column("handle", pa.string(), doc="Unique public name, without the leading @."),
        Column("created_at", TIMESTAMP, doc="When the account was created."),
        Column("country", pa.string(), allowed=COUNTRY_CODES, doc="ISO 3166-1 alpha-2 code, upper case."),
        Column("birth_year", pa.int16(), nullable=True, doc="Year of birth; null when unknown."),
        Column("protected", pa.bool_(), doc="Posts visible to approved followers only."),
        Column("status", pa.string(), allowed=_enum(ACCOUNT_STATUSES), doc="Current status."),
        Column(
            "status_changed_at",
            TIMESTAMP,
            nullable=True,
            doc="When the account entered its current status; null for accounts always active.",
        ),
    ),
    keys=(("account_id",), ("handle",)),
)

POSTS = Folder(
    name="posts",
    doc="Every post ever written, including deleted ones (``deleted_at`` set).",
    columns=(
        Column("post_id", pa.int64(), doc="Unique id of the post."),
        Column("author_id", pa.int64(), doc="``accounts.account_id`` of the author."),
        Column("created_at", TIMESTAMP, doc="When the post was published."),
        Column("text", pa.string(), doc="The text as written (may contain personal data)."),
        Column("visibility", pa.string(), allowed=_enum(POST_VISIBILITIES), doc="Audience chosen."),
        Column("reply_to", pa.int64(), nullable=True, doc="``post_id`` this post replies to."),
        Column("quote_of", pa.int64(), nullable=True, doc="``post_id`` this post quotes."),
        Column("media", pa.string(), allowed=_enum(MEDIA_KINDS), doc="Attached media kind."),
        Column("deleted_at", TIMESTAMP, nullable=True, doc="When the post was deleted; null if live."),
    ),
    keys=(("post_id",),),
    references=(
        Reference("author_id", "accounts", "account_id"),
        Reference("reply_to", "posts", "post_id"),
        Reference("quote_of", "posts", "post_id"),
    ),
)

ASSISTANT_INTERACTIONS = Folder(
    name="assistant_interactions",
    doc="Conversations with the platform's own assistant: one prompt and its response per row.",
    columns=(
        Column("interaction_id", pa.int64(), doc="Unique id of the exchange."),
        Column("account_id", pa.int64(), doc="``accounts.account_id`` of the person chatting."),
        Column("created_at", TIMESTAMP, doc="When the prompt was sent."),
        Column("prompt", pa.string(), doc="What the account holder wrote."),
        Column("response", pa.string(), doc="What the assistant answered."),
        Column("deleted_at", TIMESTAMP, nullable=True, doc="When the exchange was deleted; null if kept."),
    ),
    keys=(("interaction_id",),),
    references=(Reference("account_id", "accounts", "account_id"),),
)

BLOCKS = Folder(
    name="blocks",
    doc="Current blocks: ``blocker_id`` blocks ``blocked_id``.",
    columns=(
        Column("blocker_id", pa.int64(), doc="``accounts.account_id`` of the account that blocks."),
        Column("blocked_id", pa.int64(), doc="``accounts.account_id`` of the blocked account."),
        Column("created_at", TIMESTAMP, doc="When the block was made."),
    ),
    keys=(("blocker_id", "blocked_id"),),
    references=(
        Reference("blocker_id", "accounts", "account_id"),
        Reference("blocked_id", "accounts", "account_id"),
    ),
)

FOLLOWS = Folder(
    name="follows",
    doc="Current follow relations: ``follower_id`` follows ``followee_id``.",
    columns=(
        Column("follower_id", pa.int64(), doc="``accounts.account_id`` of the follower."),
        Column("followee_id", pa.int64(), doc="``accounts.account_id`` of the account followed."),
        Column("created_at", TIMESTAMP, doc="When the follow started."),
    ),
    keys=(("follower_id", "followee_id"),),
    references=(
        Reference("follower_id", "accounts", "account_id"),
        Reference("followee_id", "accounts", "account_id"),
    ),
)

CONSENT_EVENTS = Folder(
    name="consent_events",
    doc="Explicit consent choices recorded before Consentry, for bulk import into the ledger.",
    columns=(
        Column("account_id", pa.int64(), doc="``accounts.account_id`` whose choice this is."),
        Column("setting", pa.string(), allowed=_enum(SETTING_KEYS), doc="Catalog setting key."),
        Column("value", pa.string(), allowed=_enum(CONSENT_VALUES), doc="The choice."),
        Column("source", pa.string(), allowed=_enum(CONSENT_SOURCES), doc="Where it was made."),
        Column("recorded_at", TIMESTAMP, doc="When it was recorded."),
    ),
    references=(Reference("account_id", "accounts", "account_id"),),
)

FOLDERS: tuple[Folder, ...] = (ACCOUNTS, POSTS, ASSISTANT_INTERACTIONS, BLOCKS, FOLLOWS, CONSENT_EVENTS)
"""Every folder of the contract, in dependency order (referenced folders first)."""

FOLDERS_BY_NAME: dict[str, Folder] = {folder.name: folder for folder in FOLDERS}


def _storage_type(data_type: pa.DataType) -> pa.DataType:
    """The type as Parquet stores it: dictionary encoding and string/large_string are reader choices."""
    if pa.types.is_dictionary(data_type):
        data_type = data_type.value_type
    if pa.types.is_large_string(data_type) or pa.types.is_string_view(data_type):
        return pa.string()
    return data_type


def type_matches(expected: pa.DataType, actual: pa.DataType) -> bool:
    """Whether a file column of type ``actual`` satisfies the contract type ``expected``.

    Types are compared as Parquet stores them: ``string``, ``large_string``, ``string_view`` and
    dictionary-encoded strings are the same UTF-8 column. Timestamps must have microsecond unit and a
    time zone (Parquet's "adjusted to UTC"); naive timestamps are rejected.
    """
    expected, actual = _storage_type(expected), _storage_type(actual)
    if pa.types.is_timestamp(expected):
        return (
            pa.types.is_timestamp(actual)
            and actual.unit == expected.unit
            and actual.tz is not None
            and expected.tz is not None
        )
    return bool(expected.equals(actual))


def describe_type(data_type: pa.DataType) -> str:
    """A short human name of an Arrow type, as the contract writes it."""
    if pa.types.is_timestamp(data_type):
        zone = data_type.tz or "no time zone"
        return f"timestamp[{data_type.unit}, {zone}]"
    return str(data_type)
