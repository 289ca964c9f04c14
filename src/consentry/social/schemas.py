"""API shapes of accounts."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class AccountIn(BaseModel):
    """A new account."""

    model_config = ConfigDict(extra="forbid")

    handle: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_]+$")
    country: str | None = Field(default=None, min_length=2, max_length=2, pattern=r"^[A-Za-z]{2}$")
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    protected: bool = False


class AccountOut(BaseModel):
    """An account."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    handle: str
    created_at: datetime
    country: str | None
    birth_year: int | None
    protected: bool
    status: str
    status_changed_at: datetime | None
