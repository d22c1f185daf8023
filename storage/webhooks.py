"""Webhook deliveries: queued in the database, claimed by one bridge at a time, retried."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from storage.models import Account, WebhookDelivery, utcnow

CLAIM_FOR = timedelta(seconds=60)


def commit_queued(session: Session) -> bool:
    """Commits deliveries added with ``add``; False when another bridge queued the same
    generation's event first (the unique constraint), and nothing is kept."""
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return False
    return True


def add(
    session: Session,
    *,
    generation_id: str,
    account_id: int,
    url: str,
    event: str,
    payload: dict[str, Any],
) -> WebhookDelivery:
    """Adds a delivery to the caller's transaction (no commit)."""
    delivery = WebhookDelivery(
        generation_id=generation_id, account_id=account_id, url=url, event=event, payload=payload
    )
    session.add(delivery)
    return delivery


def queued(session: Session, generation_id: str, event: str) -> bool:
    """Whether this generation's event already has a delivery."""
    found = session.exec(
        select(WebhookDelivery.id).where(
            WebhookDelivery.generation_id == generation_id, WebhookDelivery.event == event
        )
    ).first()
    return found is not None


def claim_due(
    session: Session,
    *,
    limit: int = 10,
    per_account: int = 4,
    room: Mapping[int, int] | None = None,
) -> list[tuple[WebhookDelivery, str]]:
    """Due deliveries this caller now owns for a while, with their account's signing secret.

    At most ``per_account`` of one account's, fewer where ``room`` says how many more an
    account may have (the caller's deliveries already in flight): one account's backlog
    never fills a round.
    """
    now = utcnow()
    left = dict(room or {})
    full = [account for account, n in left.items() if n <= 0]
    candidates = session.exec(
        select(WebhookDelivery.id, WebhookDelivery.account_id)
        .where(
            WebhookDelivery.status == "pending",
            col(WebhookDelivery.next_attempt_at) <= now,
            or_(
                col(WebhookDelivery.claimed_until).is_(None),
                col(WebhookDelivery.claimed_until) <= now,
            ),
            col(WebhookDelivery.account_id).not_in(full),
        )
        .order_by(col(WebhookDelivery.next_attempt_at))
        .limit(limit * per_account)
    ).all()
    picked: list[int | None] = []
    for delivery_id, account_id in candidates:
        if len(picked) == limit:
            break
        if left.setdefault(account_id, per_account) > 0:
            left[account_id] -= 1
            picked.append(delivery_id)
    owned: list[tuple[WebhookDelivery, str]] = []
    for delivery_id in picked:
        result = session.execute(
            update(WebhookDelivery)
            .where(
                col(WebhookDelivery.id) == delivery_id,
                col(WebhookDelivery.status) == "pending",
                or_(
                    col(WebhookDelivery.claimed_until).is_(None),
                    col(WebhookDelivery.claimed_until) <= now,
                ),
            )
            .values(claimed_until=now + CLAIM_FOR)
        )
        session.commit()
        if result.rowcount:  # type: ignore[attr-defined]
            delivery = session.get(WebhookDelivery, delivery_id)
            assert delivery is not None
            account = session.get(Account, delivery.account_id)
            assert account is not None
            owned.append((delivery, account.webhook_secret))
    return owned


def record_attempt(
    session: Session,
    delivery_id: int,
    *,
    delivered: bool,
    status_code: int | None,
    error: str | None,
    retry_in: timedelta | None,
) -> None:
    """One attempt's outcome; ``retry_in`` None with no success means it is given up."""
    delivery = session.get(WebhookDelivery, delivery_id)
    assert delivery is not None
    delivery.attempts += 1
    delivery.last_status_code = status_code
    delivery.last_error = error[:500] if error else None
    delivery.claimed_until = None
    if delivered:
        delivery.status = "delivered"
        delivery.delivered_at = utcnow()
    elif retry_in is None:
        delivery.status = "failed"
    else:
        delivery.next_attempt_at = utcnow() + retry_in
    session.add(delivery)
    session.commit()
