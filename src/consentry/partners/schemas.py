"""API shapes of the partners domain (kept apart from the ORM tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from consentry.transparency.schemas import CheckpointCitation

Kind = Literal["first_party", "third_party"]

# --- registry (admin) ---------------------------------------------------------------------------------


class PartnerCreate(BaseModel):
    """A partner to register. Without ``webhook_secret`` but with ``webhook_url``, a secret is generated
    and returned once."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, examples=["acme-ai"])
    kind: Kind = "third_party"
    purposes: list[str] = Field(min_length=1, examples=[["train-ai"]])
    categories: list[str] = Field(min_length=1, examples=[["posts"]])
    deadline_hours: int = Field(default=72, description="Hours a partner has to delete revoked records.")
    webhook_url: str | None = Field(default=None, examples=["https://partner.example/consentry/webhooks"])
    webhook_secret: str | None = Field(default=None, description="whsec_ + base64 of 24-64 bytes.")


class PartnerUpdate(BaseModel):
    """Changes to a partner; absent fields stay as they are.

    ``webhook_url: null`` removes the webhook (and its secret). A new URL without a secret keeps the
    current secret, or generates one if there is none; ``rotate_secret`` generates a new one."""

    model_config = ConfigDict(extra="forbid")

    deadline_hours: int | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    rotate_secret: bool = False


class KeyOut(BaseModel):
    """A partner API key (never the key itself)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    prefix: str
    label: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyCreate(BaseModel):
    """A key to issue."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(default="", max_length=100)


class IssuedKey(KeyOut):
    """A freshly issued key: ``key`` is in this response only."""

    key: str


class RevocationCounts(BaseModel):
    """A partner's revocations by state."""

    pending: int = 0
    overdue: int = 0
    acknowledged: int = 0


class PartnerOut(BaseModel):
    """A partner (never its pseudonymisation secret; the webhook secret only once, when generated)."""

    id: int
    name: str
    kind: str
    status: Literal["active", "suspended"]
    purposes: list[str]
    categories: list[str]
    deadline_hours: int
    webhook_url: str | None
    webhook_secret_set: bool
    created_at: datetime


class PartnerDetail(PartnerOut):
    """A partner with its keys and its revocations by state."""

    keys: list[KeyOut]
    revocations: RevocationCounts


class PartnerWritten(PartnerDetail):
    """A partner just added or changed; ``webhook_secret`` is set only when Consentry generated it."""

    webhook_secret: str | None = None


# --- overdue report -------------------------------------------------------------------------------------


class OverdueRelease(BaseModel):
    """Overdue revocations of one release."""

    release: str
    revocations: int
    records: int
    oldest_deadline: datetime


class OverduePartner(BaseModel):
    """A partner's revocations past their deadline without acknowledgement."""

    partner: str
    status: str
    revocations: int
    records: int
    oldest_deadline: datetime
    releases: list[OverdueRelease]


class OverdueReport(BaseModel):
    """Every partner with overdue revocations, most overdue first."""

    as_of: datetime
    partners: list[OverduePartner]


# --- partner API ----------------------------------------------------------------------------------------


class PartnerRelease(BaseModel):
    """A release delivered to the calling partner, summarised from its manifest."""

    id: str
    purpose: str
    categories: list[str]
    as_of: datetime
    since: datetime | None
    until: datetime | None
    since_release: str | None
    created_at: datetime
    rows: dict[str, int]
    removals: int
    files: int
    bytes: int
    manifest_sha256: str


class PartnerReleaseDetail(PartnerRelease):
    """A release with its whole manifest."""

    manifest: dict[str, Any]


class ReleaseFile(BaseModel):
    """A file of a release that the partner may download."""

    path: str
    size: int
    sha256: str
    rows: int | None = None


class RevocationOut(BaseModel):
    """A revocation as its partner sees it (authors are never named)."""

    id: int
    release: str
    category: str
    reason: str
    record_ids: list[int]
    records: int
    created_at: datetime
    deadline_at: datetime
    acknowledged: bool
    acknowledged_at: datetime | None
    deleted_at: datetime | None
    method: str | None
    note: str | None


class RevocationPage(BaseModel):
    """A page of the revocation feed; pass ``next_cursor`` as ``after`` to continue."""

    items: list[RevocationOut]
    next_cursor: str | None
    has_more: bool
    checkpoint: CheckpointCitation | None = Field(
        default=None, description="the latest checkpoint of the consent ledger when the page was read"
    )


class AckCreate(BaseModel):
    """The partner's attestation that it deleted a revocation's records (no offset means UTC)."""

    model_config = ConfigDict(extra="forbid")

    deleted_at: datetime
    method: str = Field(min_length=1, max_length=100, examples=["hard delete from training store"])
    note: str | None = Field(default=None, max_length=2000)


class AckOut(BaseModel):
    """The recorded attestation; ``repeated`` is true when the revocation had been acknowledged before
    (the original attestation is returned and nothing changed)."""

    id: int
    acknowledged_at: datetime
    deleted_at: datetime
    method: str
    note: str | None
    repeated: bool


# --- the account holder's data-usage report -----------------------------------------------------------


class RevocationStateOut(BaseModel):
    """A revocation of some of the caller's records and whether the recipient confirmed deletion."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    category: str
    reason: str
    records: int
    created_at: datetime
    deadline_at: datetime
    acknowledged_at: datetime | None
    deleted_at: datetime | None
    state: str = Field(description="pending, overdue or acknowledged")


class ReleaseUsageOut(BaseModel):
    """A release that delivered some of the caller's records."""

    model_config = ConfigDict(from_attributes=True)

    release_id: str
    recipient: str
    recipient_kind: str
    purpose: str
    categories: list[str]
    delivered_at: datetime
    records: dict[str, int]
    revocations: list[RevocationStateOut]


class AccountUsageOut(BaseModel):
    """Where one account's data went."""

    account_id: int
    releases: list[ReleaseUsageOut]
    records: int = Field(description="records delivered, over every release")


class DataUsageOut(AccountUsageOut):
    """Where the caller's data went, from release lineage (and, for scope linked, each linked account's)."""

    checkpoint: CheckpointCitation | None = Field(
        default=None, description="the consent ledger's latest checkpoint when the report was read"
    )
    linked: list[AccountUsageOut] = Field(
        default_factory=list, description="scope linked: the same report for every confirmed linked account"
    )
