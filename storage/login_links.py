"""One-time log-in links for the web pages (``genserve up`` prints one for its key's account).

A link carries a random token (256 bits) valid for a few minutes and for one use.
It is kept as a row of ``web_session`` that expires with the link, under an HMAC
of the token with the server secret rather than the SHA-256 a session cookie is
kept under: no cookie value can ever match it, so the link works only through
``/login/link``, which deletes the row as it signs the browser in (a conditional
delete: of two uses at once, one wins). No table of its own, so no migration.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlalchemy import delete
from sqlmodel import Session, col

from storage.models import WebSession, utcnow

LINK_LIFETIME = timedelta(minutes=15)


def link_hash(token: str, secret: bytes) -> str:
    return hmac.new(secret, f"login-link:{token}".encode(), hashlib.sha256).hexdigest()


def create_login_link(
    session: Session, *, account_id: int, secret: bytes, lifetime: timedelta = LINK_LIFETIME
) -> str:
    """A new link token for the account (shown once, to the operator)."""
    now = utcnow()
    session.execute(delete(WebSession).where(col(WebSession.expires_at) <= now))
    token = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            account_id=account_id,
            token_hash=link_hash(token, secret),
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    session.commit()
    return token


def use_login_link(session: Session, token: str, secret: bytes) -> int | None:
    """The account the link signs in, once; None when unknown, used or expired."""
    if not token or len(token) > 128:
        return None
    wanted = link_hash(token, secret)
    row = session.execute(
        delete(WebSession)
        .where(col(WebSession.token_hash) == wanted, col(WebSession.expires_at) > utcnow())
        .returning(col(WebSession.account_id))
    ).first()
    session.commit()
    return int(row[0]) if row is not None else None
