"""Accounts and their API keys."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import Session, col, select

from storage.keys import display_prefix, generate_key, hash_key, last_four
from storage.models import Account, ApiKey, PointsLedger, utcnow

PLANS = {"free": 100, "pro": 500, "enterprise": 1000}


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
    account = Account(email=email, password_hash=password_hash, plan=plan, points=points)
    session.add(account)
    session.flush()
    if points:
        assert account.id is not None
        session.add(PointsLedger(account_id=account.id, delta=points, reason="grant"))
    session.commit()
    session.refresh(account)
    return account


def account_by_email(session: Session, email: str) -> Account | None:
    return session.exec(select(Account).where(Account.email == email)).first()


@dataclass
class NewKey:
    """The plaintext exists only here, to be shown once."""

    plaintext: str
    record: ApiKey


def create_api_key(session: Session, *, account_id: int, secret: bytes, name: str) -> NewKey:
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
    """The live key with this hash and its account, and records its use."""
    row = session.exec(
        select(ApiKey, Account)
        .join(Account, col(Account.id) == col(ApiKey.account_id))
        .where(ApiKey.key_hash == key_hash, col(ApiKey.revoked_at).is_(None))
    ).first()
    if row is None:
        return None
    key, account = row
    session.execute(update(ApiKey).where(col(ApiKey.id) == key.id).values(last_used_at=utcnow()))
    session.commit()
    return key, account


def revoke_api_key(session: Session, *, key_id: int, account_id: int | None = None) -> bool:
    stmt = update(ApiKey).where(col(ApiKey.id) == key_id, col(ApiKey.revoked_at).is_(None))
    if account_id is not None:
        stmt = stmt.where(col(ApiKey.account_id) == account_id)
    result = session.execute(stmt.values(revoked_at=utcnow()))
    session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def list_api_keys(session: Session, account_id: int) -> list[ApiKey]:
    return list(
        session.exec(
            select(ApiKey).where(ApiKey.account_id == account_id).order_by(col(ApiKey.id))
        ).all()
    )
