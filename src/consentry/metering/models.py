"""Tables of the metering domain: organisations, their keys and networks, and the access log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from consentry.db import Base, UTCDateTime

MODES = ("allow", "meter", "throttle", "block", "pay")

BigId = BigInteger().with_variant(Integer, "sqlite")


class Organisation(Base):
    """An organisation reading content, with its enforcement mode."""

    __tablename__ = "organisations"
    __table_args__ = (
        CheckConstraint("mode IN ('allow', 'meter', 'throttle', 'block', 'pay')", name="mode"),
        CheckConstraint("quota IS NULL OR quota >= 0", name="quota"),
        CheckConstraint("price_micro_usd IS NULL OR price_micro_usd >= 0", name="price_micro_usd"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # the name as compared (NFKC, case-folded: metering.service.name_key): one organisation per name
    name_key: Mapped[str] = mapped_column(String(600), unique=True)
    mode: Mapped[str] = mapped_column(String(16), default="meter")
    # posts per rolling 24 hours; for throttle mode the default is the damages threshold
    quota: Mapped[int | None] = mapped_column(BigInteger)
    # price per post in micro-dollars (USD 0.000001), for pay mode
    price_micro_usd: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OrganisationKey(Base):
    """An API key of an organisation; only its SHA-256 is stored."""

    __tablename__ = "organisation_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organisation_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OrganisationNetwork(Base):
    """An IP network (CIDR) whose unauthenticated traffic is attributed to an organisation."""

    __tablename__ = "organisation_networks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organisation_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    cidr: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OrganisationBotIdentity(Base):
    """A Web Bot Auth signature agent of an organisation: its origin and key directory, or pinned keys."""

    __tablename__ = "organisation_bot_identities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organisation_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    agent: Mapped[str] = mapped_column(String(300), unique=True)
    directory_url: Mapped[str] = mapped_column(String(500))
    # a JWKS given directly or pinned offline: used instead of fetching the directory
    pinned_jwks: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AccessRecord(Base):
    """Posts served to one subject in one minute on one route to one client. Rows are only inserted.

    ``subject`` is the meter key (``org:<id>``, ``crawler:<operator>``, ``net:<network>`` or ``unknown``);
    ``organisation_id`` is set when the subject is a registered organisation. ``basis`` says how the
    requests were attributed (``signed``, ``api_key``, ``network``, ``user_agent``, ``spoofed``,
    ``unknown``; empty in rows written before bases were recorded) and ``evidence`` why a signature did
    not count, or the agent that signed.
    """

    __tablename__ = "access_log"
    __table_args__ = (
        CheckConstraint("posts >= 0", name="posts"),
        CheckConstraint("requests >= 0", name="requests"),
        Index("ix_access_log_subject_minute", "subject", "minute"),
        Index("ix_access_log_organisation_minute", "organisation_id", "minute"),
        Index("ix_access_log_minute", "minute"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(120))
    organisation_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("organisations.id"))
    minute: Mapped[datetime] = mapped_column(UTCDateTime())
    posts: Mapped[int] = mapped_column(BigInteger)
    requests: Mapped[int] = mapped_column(Integer, default=1)
    route: Mapped[str] = mapped_column(String(200), default="")
    client: Mapped[str] = mapped_column(String(64), default="")
    basis: Mapped[str] = mapped_column(String(16), default="", server_default="")
    evidence: Mapped[str] = mapped_column(String(120), default="", server_default="")
