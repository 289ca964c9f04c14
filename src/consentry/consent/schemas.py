"""API shapes of the consent domain (kept apart from the ORM tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Value = Literal["allow", "deny"]


class SettingOut(BaseModel):
    """One setting as the account holder sees it."""

    key: str
    label: str
    value: Value
    basis: str = Field(description="explicit, default, minor, inactive, no_policy or error")
    explicit: bool
    policy_version: int | None
    seq: int | None = Field(description="ledger seq of the explicit choice in force, if any")


class SettingsOut(BaseModel):
    """All settings of one account at one time."""

    account_id: int
    as_of: datetime
    settings: list[SettingOut]


class SettingsUpdate(BaseModel):
    """One or many explicit choices."""

    model_config = ConfigDict(extra="forbid")

    # values are checked with the keys against the catalog, so one answer lists every problem
    settings: dict[str, str] = Field(
        min_length=1,
        max_length=64,
        examples=[{"assistant_training_posts": "deny"}],
        json_schema_extra={"additionalProperties": {"type": "string", "enum": ["allow", "deny"]}},
    )
    scope: Literal["account", "linked"] = Field(
        default="account",
        description="account: this account only; linked: this account and every account it has a "
        "confirmed link with, in one transaction (one event and receipt per account, each naming the "
        "account that chose as chosen_by).",
    )


class LinkedChangeOut(BaseModel):
    """What a change of scope ``linked`` did to one account."""

    account_id: int
    changed: bool = Field(description="false for an inactive linked account, which was left as it is")
    receipt_seqs: list[int] = Field(description="ledger seqs of this account's events in the change")
    settings: list[SettingOut] = Field(description="the account's effective settings after the change")


class ReceiptController(BaseModel):
    """Who controls the data: the operator."""

    model_config = ConfigDict(extra="allow")

    name: str
    url: str


class ReceiptService(BaseModel):
    """The setting the event is about, as the catalog describes it."""

    model_config = ConfigDict(extra="allow")

    setting: str
    description: str
    recipient: str
    purposes: list[str]
    categories: list[str]


class ReceiptPolicy(BaseModel):
    """The policy version in force for the account when the event was recorded."""

    model_config = ConfigDict(extra="allow")

    version: int | None
    title: str | None


class ReceiptChain(BaseModel):
    """The event's link in the ledger's hash chain: ``hash = SHA-256(prev_hash || canonical event)``."""

    model_config = ConfigDict(extra="allow")

    seq: int
    prev_hash: str
    hash: str


class Receipt(BaseModel):
    """A consent receipt (``consentry-receipt/1``): the event, its setting and its chain link.

    The signature covers the canonical JSON (RFC 8785) of exactly this object, so members are passed on
    as signed: times stay the strings the event document holds, and members this description does not
    list are kept."""

    model_config = ConfigDict(extra="allow")

    version: str = Field(examples=["consentry-receipt/1"])
    receipt_id: str = Field(description="UUID derived from the event's hash")
    issued_at: str = Field(description="the event's recorded_at, as in the event document")
    jurisdiction: str
    controller: ReceiptController
    public_key_url: str = Field(description="where the operator's receipt-signing JWK Set is served")
    subject: str = Field(description="the opaque subject key naming the account in the ledger")
    collection_method: str = Field(description="the client kind that recorded the event")
    consent_type: str = Field(description="explicit (the holder's own choice), gpc, admin or import")
    service: ReceiptService
    policy: ReceiptPolicy
    event: dict[str, Any] = Field(description="the event document whose canonical JSON the chain hashes")
    chain: ReceiptChain


class ReceiptSignature(BaseModel):
    """An Ed25519 signature over the canonical JSON of the receipt."""

    model_config = ConfigDict(extra="allow")

    alg: Literal["EdDSA"]
    kid: str = Field(description="the RFC 7638 thumbprint of the signing key")
    value: str = Field(description="base64url, without padding")


class SignedReceipt(BaseModel):
    """A signed consent receipt; verify it offline against ``/.well-known/consentry/receipt-key``."""

    model_config = ConfigDict(extra="allow")

    receipt: Receipt
    signature: ReceiptSignature


class ChangeOut(BaseModel):
    """The result of a change: one signed receipt per recorded event."""

    receipts: list[SignedReceipt]
    settings: list[SettingOut]
    scope: Literal["account", "linked"] = "account"
    accounts: list[LinkedChangeOut] = Field(
        default_factory=list,
        description="scope linked: every account the change covered, the caller's first",
    )


class EventOut(BaseModel):
    """One event of an account's consent history."""

    seq: int
    setting: str
    value: Value
    source: str
    client: str
    policy_version: int | None
    recorded_at: datetime
    hash: str
    chosen_by: str | None = Field(
        default=None, description="subject key of the account that made the choice, when a linked one did"
    )


class HistoryOut(BaseModel):
    """A page of consent history, newest first."""

    events: list[EventOut]
    next_before_seq: int | None


class PolicyIn(BaseModel):
    """A new policy version."""

    model_config = ConfigDict(extra="forbid")

    effective_at: datetime
    applies_to: Literal["all", "new_accounts"]
    defaults: dict[str, dict[str, Value]] = Field(
        examples=[{"default": {"*": "allow"}, "EEA": {"*": "deny"}, "UK": {"*": "deny"}, "CH": {"*": "deny"}}]
    )
    title: str = Field(min_length=1, max_length=200)
    summary: str = Field(default="", max_length=5000)
    allow_opt_in: bool = Field(
        default=False,
        description="Knowingly switch existing accounts from deny to allow (otherwise refused).",
    )


class ImpactRowOut(BaseModel):
    """Accounts of one jurisdiction group whose value of one setting would change."""

    model_config = ConfigDict(from_attributes=True)

    setting: str
    group: str
    before: Value
    after: Value
    accounts: int


class ImpactOut(BaseModel):
    """What a candidate policy version would change when it takes effect."""

    effective_at: datetime
    accounts: int
    changed_accounts: int
    silent_opt_ins: int
    changes_defaults: bool
    rows: list[ImpactRowOut]


class PolicyOut(BaseModel):
    """A stored policy version."""

    model_config = ConfigDict(from_attributes=True)

    version: int
    effective_at: datetime
    applies_to: str
    defaults: dict[str, dict[str, str]]
    title: str
    summary: str
    created_at: datetime
    impact: ImpactOut | None = Field(default=None, description="Measured when the version was added.")


def impact_out(impact: Any) -> ImpactOut:
    """The API form of a measured impact."""
    return ImpactOut(
        effective_at=impact.effective_at,
        accounts=impact.accounts,
        changed_accounts=impact.changed_accounts,
        silent_opt_ins=impact.silent_opt_ins,
        changes_defaults=impact.changes_defaults,
        rows=[ImpactRowOut.model_validate(row) for row in impact.rows],
    )


class NotificationOut(BaseModel):
    """A message for the account holder (for example: a policy change that changes their consent)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    payload: dict[str, Any]
    created_at: datetime
    delivered_at: datetime | None
