"""Tables: accounts, API keys, generations (the document's projects), assets, points ledger,
stored results, idempotency records and webhook deliveries."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

UNSYNCHRONISED = {"synchronize_session": False}
"""Execution options for a bulk UPDATE on the request path whose session holds no copy of
the rows it changes (a fresh session, or one whose objects are of another table): the
ORM's default would compile the statement's criteria into a Python evaluator and run
it over the session's objects, a large share of each statement's CPU for nothing."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; every stored one is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def new_generation_id() -> str:
    """24 lowercase hex characters, the document's identifier shape."""
    return secrets.token_hex(12)


def new_asset_token() -> str:
    """128 random bits: an output URL cannot be guessed or enumerated."""
    return secrets.token_hex(16)


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kw))


class Account(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str | None = Field(default=None, unique=True, index=True, max_length=320)
    password_hash: str | None = Field(default=None, max_length=255)
    plan: str = Field(default="free", max_length=32)
    points: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    webhook_secret: str = Field(default_factory=lambda: secrets.token_hex(32), max_length=64)
    created_at: datetime = _ts(nullable=False, default=utcnow)


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    name: str = Field(default="default", max_length=100)
    prefix: str = Field(max_length=16)
    last_four: str = Field(max_length=4)
    key_hash: str = Field(unique=True, index=True, max_length=64)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    last_used_at: datetime | None = _ts(nullable=True)
    revoked_at: datetime | None = _ts(nullable=True)


class Generation(SQLModel, table=True):
    """One request's work; a completed one is a project in the document's sense."""

    __table_args__ = (
        Index("ix_generation_account_kind_created", "account_id", "kind", "created_at"),
    )

    id: str = Field(default_factory=new_generation_id, primary_key=True, max_length=24)
    account_id: int = Field(foreign_key="account.id", index=True)
    api_key_id: int | None = Field(default=None, foreign_key="api_key.id")
    kind: str = Field(max_length=16, index=True)  # image | video | 3d
    model: str = Field(max_length=100)
    prompt: str = Field(default="")
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=16, index=True)
    error_code: str | None = Field(default=None, max_length=64)
    error_message: str | None = Field(default=None)
    request_id: str = Field(default="", max_length=64)
    points_cost: int = 0
    generation_time_ms: int | None = None
    created_at: datetime = _ts(nullable=False, default=utcnow, index=True)
    completed_at: datetime | None = _ts(nullable=True)
    # The bridge process running it, and until when: the owner renews the lease while the
    # work is live; another bridge ends and refunds a live row whose lease has run out.
    # Both None on rows written before leases (they keep the deadline rule).
    owner: str | None = Field(default=None, max_length=64, index=True)
    lease_until: datetime | None = _ts(nullable=True)


class Asset(SQLModel, table=True):
    """One stored file of a generation: an output, or a caller's input image or mask."""

    __table_args__ = (UniqueConstraint("generation_id", "role", "index"),)

    id: int | None = Field(default=None, primary_key=True)
    generation_id: str = Field(foreign_key="generation.id", index=True, max_length=24)
    index: int = 0
    role: str = Field(default="primary", max_length=16)  # primary | preview | input | mask
    token: str = Field(default_factory=new_asset_token, unique=True, max_length=32)
    blob_key: str = Field(max_length=255)
    file_name: str = Field(max_length=255)
    content_type: str = Field(max_length=100)
    file_size: int = 0
    width: int = 0
    height: int = 0
    duration: float = 0.0
    created_at: datetime = _ts(nullable=False, default=utcnow)


class PointsLedger(SQLModel, table=True):
    """Every change of a balance; the balance always equals the sum of its rows."""

    __tablename__ = "points_ledger"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    delta: int
    reason: str = Field(max_length=32)  # grant | debit | refund
    generation_id: str | None = Field(default=None, foreign_key="generation.id", max_length=24)
    created_at: datetime = _ts(nullable=False, default=utcnow)


class WebSession(SQLModel, table=True):
    """A signed-in browser: only a SHA-256 of the cookie's token is stored."""

    __tablename__ = "web_session"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    token_hash: str = Field(unique=True, index=True, max_length=64)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    expires_at: datetime = _ts(nullable=False, index=True)


class GenerationResult(SQLModel, table=True):
    """The ``data`` a finished generation answered with, for status look-ups and replays."""

    __tablename__ = "generation_result"

    generation_id: str = Field(primary_key=True, foreign_key="generation.id", max_length=24)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class IdempotencyRecord(SQLModel, table=True):
    """One ``Idempotency-Key`` of one account: the request it stood for and its answer."""

    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("account_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    key: str = Field(max_length=255)
    request_hash: str = Field(max_length=64)
    status: str = Field(default="in_progress", max_length=16)  # in_progress | completed
    response_status: int | None = None
    response_body: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True)
    )
    generation_id: str | None = Field(default=None, max_length=24)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    expires_at: datetime = _ts(nullable=False, index=True)


class WebhookDelivery(SQLModel, table=True):
    """A signed POST owed to a client; retried with backoff until delivered or given up.

    At most one per generation and event, whichever bridge ended the generation.
    """

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index("uq_webhook_delivery_generation_event", "generation_id", "event", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    generation_id: str = Field(foreign_key="generation.id", index=True, max_length=24)
    account_id: int = Field(foreign_key="account.id")
    url: str = Field(max_length=2048)
    event: str = Field(max_length=32)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=16, index=True)  # pending|delivered|failed
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    next_attempt_at: datetime = _ts(nullable=False, default=utcnow, index=True)
    claimed_until: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    delivered_at: datetime | None = _ts(nullable=True)
