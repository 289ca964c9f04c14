"""API shapes of the transparency log that other domains' responses embed."""

from __future__ import annotations

from pydantic import BaseModel, Field


class CheckpointCitation(BaseModel):
    """A signed checkpoint of the consent ledger's transparency log, cited by a document."""

    origin: str = Field(description="the log's origin line (also its key name)")
    size: int = Field(description="the number of ledger events the checkpoint commits to")
    root: str = Field(description="the tree's root hash, hex")
    log_key: str = Field(description="the log's signed-note verifier key")
    cosigned_by: list[str] = Field(description="witnesses whose cosignatures the checkpoint carries")
    checkpoint: str = Field(description="the signed note (C2SP tlog-checkpoint) with its cosignature lines")
