"""Settings read from ``CONSENTRY_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DAMAGES_THRESHOLD_POSTS = 1_000_000
"""The damages clause's default threshold: posts served to one organisation in any 24 hours."""
DAMAGES_RATE_CENTS = 1_500_000
"""The damages clause's default rate: USD 15,000 (in cents) per 1,000,000 posts."""


class Settings(BaseSettings):
    """Process-wide configuration; every field maps to ``CONSENTRY_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="CONSENTRY_", extra="ignore")

    home: Path = Field(default=Path("./consentry-data"), description="Data folder (keys, SQLite file).")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in home.")
    redis_url: str | None = Field(
        default=None, description="Redis URL of the meter (redis+cluster://host:port,... for a cluster)."
    )
    catalog_file: Path | None = Field(default=None, description="Replacement settings catalog (JSON).")
    jurisdictions_file: Path | None = Field(default=None, description="Replacement country-to-group map.")
    operator_name: str = Field(default="Consentry demo operator", description="Named in receipts.")
    operator_url: str = Field(default="http://127.0.0.1:8000", description="Public base URL of the service.")
    max_body_bytes: int = Field(default=64 * 1024, description="Largest accepted request body.")
    damages_threshold_posts: int = Field(
        default=DAMAGES_THRESHOLD_POSTS,
        gt=0,
        description="Posts per organisation per 24 h before liquidated damages.",
    )
    blocked_can_read: bool = Field(
        default=True, description="Blocked accounts may still read the blocker's public posts."
    )
    robots_ai_scope: Literal["all", "training"] = Field(
        default="all", description="robots.txt blocks every known AI crawler, or only those that train."
    )
    tdm_policy_url: str | None = Field(default=None, description="TDM policy linked from tdmrep.json.")
    unregistered_mode: Literal["allow", "meter", "throttle", "block", "pay"] = Field(
        default="meter", description="Enforcement mode for traffic of organisations nobody registered."
    )
    block_releases_when_overdue: bool = Field(
        default=True, description="Refuse new releases to a partner with overdue revocations."
    )
    retention_file: Path | None = Field(
        default=None, description="Retention rules (JSON, see docs/retention.md); default rules without."
    )
    retention_interval_hours: float = Field(
        default=24, gt=0, description="Hours between scheduled retention runs of the worker."
    )
    webhook_max_attempts: int = Field(
        default=12, ge=1, le=100, description="Attempts to deliver a webhook before it is dead (dead letter)."
    )
    webhook_backoff_base_seconds: float = Field(
        default=60, gt=0, description="Webhook retry backoff: the longest wait after the first failure."
    )
    webhook_backoff_cap_seconds: float = Field(
        default=8 * 3600, gt=0, description="Webhook retry backoff: the longest wait between two attempts."
    )
    webhook_timeout_seconds: float = Field(
        default=10, gt=0, le=300, description="Time limit of one webhook request, connection included."
    )
    token_grace_seconds: float = Field(
        default=300,
        ge=0,
        le=3600,
        description="During a database outage, eligibility still accepts tokens verified this recently.",
    )
    worker_concurrency: int = Field(
        default=16, ge=1, le=1024, description="Webhook requests the worker keeps in flight at once."
    )
    spark_master: str | None = Field(
        default=None,
        description="Where builds with the Spark engine run: local[N] (default local[*]), spark://host:port "
        "(standalone cluster), sc://host:port (Spark Connect), yarn or k8s://...",
    )

    transparency_origin: str | None = Field(
        default=None,
        description="Origin line of the transparency log's checkpoints; default the operator URL's host "
        "plus /consentry/consent-log.",
    )
    checkpoint_interval_seconds: float = Field(
        default=5, gt=0, le=3600, description="Shortest time between two checkpoints of the transparency log."
    )
    witnesses_file: Path | None = Field(
        default=None, description="Witnesses asked to cosign checkpoints (JSON, see docs/transparency.md)."
    )

    @property
    def resolved_origin(self) -> str:
        """The transparency log's origin: the configured one, or ``<operator host>/consentry/consent-log``."""
        if self.transparency_origin:
            return self.transparency_origin
        host = urlsplit(self.operator_url).hostname or "localhost"
        return f"{host}/consentry/consent-log"

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file inside ``home``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'consentry.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process, read once from the environment."""
    return Settings()
