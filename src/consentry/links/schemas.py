"""API shapes of linked accounts."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from consentry.ids import Id64


class LinkIn(BaseModel):
    """Ask to link the caller's account with another account the caller controls."""

    model_config = ConfigDict(extra="forbid")

    account_id: Id64 = Field(description="The other account; it confirms the link with its own token.")


class LinkOut(BaseModel):
    """A link as the caller sees it."""

    model_config = ConfigDict(from_attributes=True)

    account_id: int = Field(description="The other account of the link.")
    handle: str
    status: Literal["pending", "confirmed"]
    direction: Literal["outgoing", "incoming"] = Field(
        description="outgoing: the caller asked, the other account must confirm; incoming: the other asked"
    )
    source: Literal["user", "admin", "import"]
    created_at: datetime
    confirmed_at: datetime | None
    account_status: str = Field(description="the other account's status (active, deactivated)")


class LinkPairIn(BaseModel):
    """Two accounts the operator's identity system knows to belong to one person."""

    model_config = ConfigDict(extra="forbid")

    account_id: Id64
    linked_account_id: Id64


class LinkImportIn(BaseModel):
    """Pairs of accounts to link, confirmed at once (all or nothing)."""

    model_config = ConfigDict(extra="forbid")

    links: list[LinkPairIn] = Field(min_length=1, max_length=10_000)


class LinkImportOut(BaseModel):
    """What an import did."""

    model_config = ConfigDict(from_attributes=True)

    created: int = Field(description="new confirmed links")
    confirmed: int = Field(description="pending links the import confirmed")
