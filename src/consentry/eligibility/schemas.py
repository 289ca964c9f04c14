"""API shapes of the eligibility domain."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from consentry.eligibility.service import MAX_HTTP_IDS
from consentry.ids import Id64


class EligibilityIn(BaseModel):
    """Which of these accounts allow a use of their data now: name a setting, or a purpose and a
    recipient (every catalog setting covering them must allow)."""

    model_config = ConfigDict(extra="forbid")

    setting: str | None = Field(default=None, examples=["assistant_realtime"])
    purpose: str | None = Field(default=None, examples=["ai-input"])
    recipient: str | None = Field(
        default=None,
        description="A registered recipient's name, or a recipient kind: first_party or third_party.",
        examples=["first_party"],
    )
    category: str | None = Field(
        default=None, description="Data category (default posts) with purpose and recipient."
    )
    account_ids: list[Id64] = Field(max_length=MAX_HTTP_IDS, examples=[[1, 2, 3]])

    @model_validator(mode="after")
    def _one_form(self) -> EligibilityIn:
        if self.setting is None and (self.purpose is None or self.recipient is None):
            raise ValueError("name a setting, or a purpose and a recipient")
        if self.setting is not None and (self.purpose or self.recipient or self.category):
            raise ValueError("name either a setting, or a purpose and a recipient (and category), not both")
        return self


class EligibilityOut(BaseModel):
    """The allowed accounts among those asked (distinct, ascending); every other id is not allowed."""

    allowed: list[int]
    as_of: datetime = Field(description="The instant the answer holds for (the time of the call).")
    settings: list[str] = Field(description="The catalog settings that all had to allow.")
    ledger_seq: int | None = Field(description="The ledger head the answer reflects.")
    asked: int = Field(description="How many ids were asked (repeats counted).")
    error: str | None = Field(
        default=None, description="Set when evaluation failed: nothing is allowed then (fail closed)."
    )
