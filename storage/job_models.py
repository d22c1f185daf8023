"""Tables for work that outlives a request: stored results, idempotency records, webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.models import utcnow


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kw))


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
    """A signed POST owed to a client; retried with backoff until delivered or given up."""

    __tablename__ = "webhook_delivery"

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
