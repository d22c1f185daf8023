"""Accounts and their API keys."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from storage.keys import display_prefix, generate_key, hash_key, last_four
from storage.models import Account, ApiKey, PointsLedger, aware, utcnow

# Requests per API key per hour.
PLANS = {"free": 100, "pro": 500, "enterprise": 1000}
# A key's last use is written at most this often: one write per key per minute, not per request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class EmailTaken(Exception):
    pass


class TooManyKeys(Exception):
    """The account already holds the most live keys it may."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"an account may hold at most {limit} live API keys; revoke one to create another "
            "(genserve keys list --email <email>, then genserve keys revoke <id>)"
        )
        self.limit = limit


def normalise_email(email: str) -> str:
    return email.strip().lower()


def create_account(
    session: Session,
    *,
    email: str | None,
    password_hash: str | None = None,
    plan: str = "free",
    points: int = 0,
) -> Account:
    """A new account with an opening grant recorded in the ledger."""
    if plan not in PLANS:
        raise ValueError(f"unknown plan {plan!r}; plans: {', '.join(PLANS)}")
    if points < 0:
        raise ValueError("an opening balance cannot be negative")
    account = Account(email=email, password_hash=password_hash, plan=plan, points=points)
    session.add(account)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise EmailTaken(email) from exc
    if points:
        assert account.id is not None
        session.add(PointsLedger(account_id=account.id, delta=points, reason="grant"))
    session.commit()
    session.refresh(account)
    return account


def account_by_id(session: Session, account_id: int) -> Account | None:
    return session.get(Account, account_id)


def account_by_email(session: Session, email: str) -> Account | None:
    return session.exec(select(Account).where(Account.email == email)).first()


def set_plan(session: Session, *, account_id: int, plan: str) -> bool:
    """Takes effect on the account's next request: the limit is read per request."""
    if plan not in PLANS:
        raise ValueError(f"unknown plan {plan!r}; plans: {', '.join(PLANS)}")
    result = session.execute(update(Account).where(col(Account.id) == account_id).values(plan=plan))
    session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def set_password(session: Session, *, account_id: int, password_hash: str) -> None:
    session.execute(
        update(Account).where(col(Account.id) == account_id).values(password_hash=password_hash)
    )
    session.commit()


@dataclass
class AccountSummary:
    account: Account
    active_keys: int


def list_accounts(session: Session) -> list[AccountSummary]:
    live = (
        select(ApiKey.account_id, func.count().label("n"))
        .where(col(ApiKey.revoked_at).is_(None))
        .group_by(col(ApiKey.account_id))
        .subquery()
    )
    rows = session.exec(
        select(Account, func.coalesce(live.c.n, 0))
        .outerjoin(live, live.c.account_id == col(Account.id))
        .order_by(col(Account.id))
    ).all()
    return [AccountSummary(account=a, active_keys=int(n)) for a, n in rows]


@dataclass
class NewKey:
    """The plaintext exists only here, to be shown once."""

    plaintext: str
    record: ApiKey


def live_key_count(session: Session, account_id: int) -> int:
    """The account's keys that are not revoked."""
    count = session.exec(
        select(func.count())
        .select_from(ApiKey)
        .where(ApiKey.account_id == account_id, col(ApiKey.revoked_at).is_(None))
    ).one()
    return int(count)


def create_api_key(
    session: Session, *, account_id: int, secret: bytes, name: str, max_live: int | None = None
) -> NewKey:
    """A new key; with ``max_live``, only while the account holds fewer live keys (else
    :class:`TooManyKeys`), exact under concurrent creations."""
    if max_live is not None:
        # Write-lock the account row first (a no-op update), so concurrent creations for one
        # account count one after the other; the first statement of the transaction on SQLite.
        session.execute(
            update(Account).where(col(Account.id) == account_id).values(plan=Account.plan)
        )
        if live_key_count(session, account_id) >= max_live:
            session.rollback()
            raise TooManyKeys(max_live)
    plaintext = generate_key()
    record = ApiKey(
        account_id=account_id,
        name=name,
        prefix=display_prefix(plaintext),
        last_four=last_four(plaintext),
        key_hash=hash_key(plaintext, secret),
    )
    session.add(record)
    session.commit()
    session.refresh(record)
    return NewKey(plaintext=plaintext, record=record)


def key_owner(session: Session, key_hash: str) -> tuple[ApiKey, Account] | None:
    """The live key with this hash and its account, and records its use.

    The look-up is by an HMAC the caller cannot steer, and the stored hash is
    compared again in constant time. The last use is written at most once per
    ``LAST_USED_RESOLUTION``, so busy keys do not turn every request into a write.
    """
    row = session.exec(
        select(ApiKey, Account)
        .join(Account, col(Account.id) == col(ApiKey.account_id))
        .where(ApiKey.key_hash == key_hash, col(ApiKey.revoked_at).is_(None))
    ).first()
    if row is None:
        return None
    key, account = row
    if not hmac.compare_digest(key.key_hash.encode(), key_hash.encode()):
        return None
    now = utcnow()
    if key.last_used_at is None or now - aware(key.last_used_at) >= LAST_USED_RESOLUTION:
        session.execute(update(ApiKey).where(col(ApiKey.id) == key.id).values(last_used_at=now))
        session.commit()
        key.last_used_at = now
    return key, account


def api_key_by_id_or_hash(
    session: Session, *, key_id: int | None = None, key_hash: str = ""
) -> ApiKey | None:
    """A key row, live or revoked, by its id or by its keyed hash (an operator's look-up)."""
    if key_id is not None:
        return session.get(ApiKey, key_id)
    return session.exec(select(ApiKey).where(ApiKey.key_hash == key_hash)).first()


def revoke_api_key(session: Session, *, key_id: int, account_id: int | None = None) -> bool:
    stmt = update(ApiKey).where(col(ApiKey.id) == key_id, col(ApiKey.revoked_at).is_(None))
    if account_id is not None:
        stmt = stmt.where(col(ApiKey.account_id) == account_id)
    result = session.execute(stmt.values(revoked_at=utcnow()))
    session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def api_key_of(session: Session, *, key_id: int, account_id: int) -> ApiKey | None:
    """The key only when it belongs to the account: another account's id reads as absent."""
    key = session.get(ApiKey, key_id)
    if key is None or key.account_id != account_id:
        return None
    return key


def list_api_keys(session: Session, account_id: int) -> list[ApiKey]:
    return list(
        session.exec(
            select(ApiKey).where(ApiKey.account_id == account_id).order_by(col(ApiKey.id))
        ).all()
    )
