"""Points: debited when work starts, never below zero, refunded exactly once."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import update
from sqlmodel import Session, col, func, select

from storage import idempotency
from storage.models import UNSYNCHRONISED, Account, Generation, PointsLedger, utcnow


class InsufficientPoints(Exception):
    def __init__(self, balance: int, needed: int) -> None:
        super().__init__(f"balance {balance} is below the {needed} points needed")
        self.balance = balance
        self.needed = needed


def start_generation(
    session: Session, generation: Generation, *, claim_id: int | None = None
) -> int:
    """Writes the pending generation and takes its points in one transaction.

    The conditional update can never take a balance below zero, whatever runs
    beside it. ``claim_id``: the request's idempotency record, tied to the
    generation in the same transaction. Returns the balance after the debit.
    """
    cost = generation.points_cost
    session.add(generation)
    session.flush()
    if claim_id is not None:
        idempotency.attach(session, claim_id, generation.id)
    if cost <= 0:
        session.commit()
        return balance(session, generation.account_id)
    after = session.execute(
        update(Account)
        .where(col(Account.id) == generation.account_id, col(Account.points) >= cost)
        .values(points=Account.points - cost)
        .returning(col(Account.points))
        .execution_options(**UNSYNCHRONISED)
    ).scalar_one_or_none()
    if after is None:
        session.rollback()
        raise InsufficientPoints(balance(session, generation.account_id), cost)
    session.add(
        PointsLedger(
            account_id=generation.account_id,
            delta=-cost,
            reason="debit",
            generation_id=generation.id,
        )
    )
    session.commit()
    return int(after)


def finish_unsuccessfully(
    session: Session,
    generation_id: str,
    *,
    status: str,
    code: str,
    message: str,
    also: Callable[[Session, Generation], None] | None = None,
) -> bool:
    """Marks a live generation failed or cancelled and refunds it; only the first call acts.

    ``also`` runs with the ended row inside the same transaction (the first call only).
    """
    result = session.execute(
        update(Generation)
        .where(
            col(Generation.id) == generation_id,
            col(Generation.status).in_(("pending", "running")),
        )
        .values(status=status, error_code=code, error_message=message, completed_at=utcnow())
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        session.rollback()
        return False
    gen = session.get(Generation, generation_id)
    assert gen is not None
    if gen.points_cost > 0:
        session.execute(
            update(Account)
            .where(col(Account.id) == gen.account_id)
            .values(points=Account.points + gen.points_cost)
        )
        session.add(
            PointsLedger(
                account_id=gen.account_id,
                delta=gen.points_cost,
                reason="refund",
                generation_id=gen.id,
            )
        )
    if also is not None:
        also(session, gen)
    session.commit()
    return True


def grant(session: Session, account_id: int, amount: int, reason: str = "grant") -> int:
    session.execute(
        update(Account).where(col(Account.id) == account_id).values(points=Account.points + amount)
    )
    session.add(PointsLedger(account_id=account_id, delta=amount, reason=reason))
    session.commit()
    return balance(session, account_id)


def balance(session: Session, account_id: int) -> int:
    value = session.exec(select(Account.points).where(Account.id == account_id)).one()
    return int(value)


def ledger_sum(session: Session, account_id: int) -> int:
    total = session.exec(
        select(func.coalesce(func.sum(PointsLedger.delta), 0)).where(
            PointsLedger.account_id == account_id
        )
    ).one()
    return int(total)
