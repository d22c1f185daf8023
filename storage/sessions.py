"""Browser sessions for the settings pages: a random cookie token, stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete
from sqlmodel import Session, col, select

from storage.models import Account, ApiKey, WebSession, utcnow


def token_hash(token: str) -> str:
    """A plain SHA-256 suffices: the token carries 256 random bits, nothing to brute-force."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_session(session: Session, *, account_id: int, lifetime: timedelta) -> str:
    """A new session for the account; returns the cookie's token (shown to the browser only)."""
    now = utcnow()
    session.execute(delete(WebSession).where(col(WebSession.expires_at) <= now))
    token = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            account_id=account_id,
            token_hash=token_hash(token),
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    session.commit()
    return token


def session_account(session: Session, token: str) -> Account | None:
    """The account signed in with this token, if the session is live."""
    row = session.exec(
        select(Account)
        .join(WebSession, col(WebSession.account_id) == col(Account.id))
        .where(WebSession.token_hash == token_hash(token), col(WebSession.expires_at) > utcnow())
    ).first()
    return row


def session_caller(session: Session, token: str) -> tuple[Account, ApiKey | None] | None:
    """The live session's account and its newest live key (None when it has none).

    The key is the one whose hourly counter a signed-in page's API request moves
    (``rest_bridge.callers.keys``).
    """
    account = session_account(session, token)
    if account is None:
        return None
    key = session.exec(
        select(ApiKey)
        .where(ApiKey.account_id == account.id, col(ApiKey.revoked_at).is_(None))
        .order_by(col(ApiKey.id).desc())
    ).first()
    return account, key


def end_session(session: Session, token: str) -> None:
    session.execute(delete(WebSession).where(col(WebSession.token_hash) == token_hash(token)))
    session.commit()
