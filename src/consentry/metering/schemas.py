"""API shapes of the metering domain (kept apart from the ORM tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from consentry.config import DAMAGES_RATE_CENTS, DAMAGES_THRESHOLD_POSTS
from consentry.ids import INT64_MAX

Mode = Literal["allow", "meter", "throttle", "block", "pay"]
Rounding = Literal["pro_rata", "per_started_million"]
Count = Annotated[int, Field(ge=0, le=INT64_MAX, strict=True)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def price_usd(micro: int | None) -> str | None:
    """Micro-dollars as a decimal string: ``1500`` -> ``'0.0015'``."""
    if micro is None:
        return None
    whole, fraction = divmod(micro, 1_000_000)
    text = f"{whole}.{fraction:06d}".rstrip("0")
    return text + "00" if text.endswith(".") else text


class OrganisationCreate(BaseModel):
    """A new organisation."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(examples=["Example AI Labs"])
    mode: Mode = "meter"
    quota: Count | None = Field(default=None, description="posts per rolling 24 hours")
    price_micro_usd: Count | None = Field(default=None, description="price per post in USD 0.000001 (pay)")


class OrganisationUpdate(BaseModel):
    """Changes to an organisation; fields left out are kept, ``null`` clears quota or price."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    mode: Mode | None = None
    quota: Count | None = None
    price_micro_usd: Count | None = None


class KeyOut(BaseModel):
    """An organisation API key (never the key itself)."""

    id: int
    organisation_id: int
    hint: str
    label: str
    created_at: datetime
    revoked_at: datetime | None


class IssuedKey(KeyOut):
    """A freshly issued key: ``key`` is shown this once."""

    key: str


class KeyCreate(BaseModel):
    """A request for a new key."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(default="", max_length=200)


class NetworkCreate(BaseModel):
    """A network to attribute to an organisation."""

    model_config = ConfigDict(extra="forbid")

    cidr: str = Field(max_length=64, examples=["203.0.113.0/24"])


class NetworkOut(BaseModel):
    """A network attributed to an organisation."""

    id: int
    organisation_id: int
    cidr: str
    created_at: datetime


class BotIdentityCreate(BaseModel):
    """A Web Bot Auth signature agent to register for an organisation."""

    model_config = ConfigDict(extra="forbid")

    agent: str = Field(max_length=300, examples=["https://crawler.example"])
    directory_url: str | None = Field(
        default=None,
        max_length=500,
        description="default: <agent>/.well-known/http-message-signatures-directory",
    )
    jwks: dict[str, Any] | None = Field(
        default=None, description="keys given directly (pinned; never fetched)"
    )


class BotIdentityPin(BaseModel):
    """Keys to pin for an identity (a JWKS), or null to fetch its directory again."""

    model_config = ConfigDict(extra="forbid")

    jwks: dict[str, Any] | None


class BotIdentityOut(BaseModel):
    """A registered signature agent."""

    id: int
    organisation_id: int
    agent: str
    directory_url: str
    pinned: bool
    pinned_key_ids: list[str]
    created_at: datetime
    updated_at: datetime


class OrganisationOut(BaseModel):
    """An organisation with its keys and networks."""

    id: int
    name: str
    mode: Mode
    quota: int | None
    price_micro_usd: int | None
    price_usd: str | None
    subject: str
    created_at: datetime
    updated_at: datetime
    keys: list[KeyOut] = []
    networks: list[NetworkOut] = []
    bot_identities: list[BotIdentityOut] = []


class TermsIn(BaseModel):
    """The damages clause."""

    threshold: Count = DAMAGES_THRESHOLD_POSTS
    rate_cents: Count = DAMAGES_RATE_CENTS
    rounding: Rounding = "pro_rata"


class HourEvidence(BaseModel):
    """Posts and responses in one hour of a breach window."""

    start: datetime
    end: datetime
    posts: int
    requests: int
    bases: dict[str, int] = Field(default_factory=dict, description="posts per attribution basis")


class Breakdown(BaseModel):
    """Posts by route or by client within a window."""

    name: str
    posts: int


class BreachWindow(BaseModel):
    """One 24-hour breach window."""

    number: int
    start: datetime
    end: datetime
    posts: int
    amount_cents: int
    amount_usd: str
    hours: list[HourEvidence]
    routes: list[Breakdown] = []
    clients: list[Breakdown] = []
    bases: list[Breakdown] = []
    evidence: list[Breakdown] = Field(
        default_factory=list, description="posts per signing agent, or per reason a signature did not count"
    )


class Statement(BaseModel):
    """A statement of liquidated damages for one organisation and period."""

    organisation: str
    organisation_id: int | None
    subject: str
    period_from: datetime
    period_to: datetime
    terms: TermsIn
    posts_in_period: int
    posts_in_windows: int
    windows: list[BreachWindow]
    total_amount_cents: int
    total_amount_usd: str
    generated_at: datetime
    method: str


class TopEntry(BaseModel):
    """A subject ranked by posts in the last 24 hours."""

    subject: str
    organisation_id: int | None
    organisation: str
    mode: str | None
    posts_24h: int
    threshold: int
    share_of_threshold: float
    projected_cents: int
    projected_usd: str


class TopOut(BaseModel):
    """The ranking at one time."""

    as_of: datetime
    window_start: datetime
    terms: TermsIn
    entries: list[TopEntry]
