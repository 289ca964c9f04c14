"""Settings read from ``CONSENTRY_*`` environment variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from consentry.defaults import DAMAGES_RATE_CENTS as DAMAGES_RATE_CENTS
from consentry.defaults import DAMAGES_THRESHOLD_POSTS as DAMAGES_THRESHOLD_POSTS

DEFAULT_OPERATOR_URL = "http://127.0.0.1:8000"
"""The operator URL when none is configured and no server of this process says where it listens."""


def listen_url(host: str, port: int) -> str:
    """The base URL a client on this machine reaches a server bound to ``host:port`` at: a wildcard
    address (``0.0.0.0``, ``::``) is reached through the loopback address of its family."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - the wildcard is what is being translated
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


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
    operator_url: str = Field(
        default="",
        description="Public base URL of the service, named in receipts; default where the server listens "
        "(listen_url), else " + DEFAULT_OPERATOR_URL + ".",
    )
    listen_url: str | None = Field(
        default=None,
        description="Where this process's server listens; set by consentry serve and consentry demo.",
    )
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
    token_cache_seconds: float = Field(
        default=2,
        ge=0,
        le=60,
        description="A bearer token verified this recently is not looked up again by the same process; "
        "a revocation made by another process takes effect within this time (0 turns the cache off).",
    )
    worker_concurrency: int = Field(
        default=16, ge=1, le=1024, description="Webhook requests the worker keeps in flight at once."
    )
    job_concurrency: int = Field(
        default=1, ge=1, le=64, description="Jobs (dataset builds, account exports) a worker runs at once."
    )
    job_lease_seconds: float = Field(
        default=60,
        ge=1,
        le=3600,
        description="A running job's lease, renewed by heartbeats; a job whose worker died is taken over "
        "by another once it runs out.",
    )
    job_max_attempts: int = Field(
        default=3, ge=1, le=100, description="Workers a job may outlive before it is failed (attempts)."
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

    @model_validator(mode="after")
    def _resolve_operator_url(self) -> Settings:
        """One operator URL for every user of it: the configured one, else where the server listens."""
        if not self.operator_url:
            self.operator_url = self.listen_url or DEFAULT_OPERATOR_URL
        return self

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


def listen_on(url: str) -> None:
    """Make ``url`` (see ``listen_url``) where this process's server listens: the operator URL of this
    process and of the server processes it starts, unless ``CONSENTRY_OPERATOR_URL`` is configured.

    The environment is how it reaches the worker processes uvicorn starts (they build the application
    from the settings they read), so this is the one place Consentry writes it.
    """
    os.environ["CONSENTRY_LISTEN_URL"] = url  # noqa: TID251 - read back through Settings.listen_url
    get_settings.cache_clear()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process, read once from the environment."""
    return Settings()
