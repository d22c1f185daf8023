"""Idempotency records: the first request with a key claims it; retries get its answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from storage.models import Generation, IdempotencyRecord, aware, utcnow

TTL = timedelta(hours=24)


@dataclass
class Claim:
    """``record`` is ours to fill when ``fresh``; otherwise it is the earlier request's."""

    fresh: bool
    record: IdempotencyRecord


def claim(session: Session, *, account_id: int, key: str, request_hash: str) -> Claim:
    """Inserts an in-progress record, or returns the live one already there.

    A record past its time, or a 202 whose generation ended unsuccessfully, is
    replaced by the new claim.

    The unique constraint decides between two simultaneous first requests:
    exactly one insert wins.
    """
    for _ in range(3):
        record = IdempotencyRecord(
            account_id=account_id,
            key=key,
            request_hash=request_hash,
            expires_at=utcnow() + TTL,
        )
        session.add(record)
        try:
            session.commit()
            session.refresh(record)
            return Claim(fresh=True, record=record)
        except IntegrityError:
            session.rollback()
        existing = session.exec(
            select(IdempotencyRecord).where(
                IdempotencyRecord.account_id == account_id, IdempotencyRecord.key == key
            )
        ).first()
        if existing is None:
            continue
        if aware(existing.expires_at) <= utcnow() or _ended_unsuccessfully(session, existing):
            session.execute(
                delete(IdempotencyRecord).where(col(IdempotencyRecord.id) == existing.id)
            )
            session.commit()
            continue
        return Claim(fresh=False, record=existing)
    raise RuntimeError("could not claim an idempotency key")


def _ended_unsuccessfully(session: Session, record: IdempotencyRecord) -> bool:
    """A 202 whose generation then failed or was cancelled (and so refunded).

    Replaying that 202 would point the client at a generation that will never
    finish (abandoned by a bridge that crashed, say); its retry starts afresh,
    as a retry of a failed synchronous request does.
    """
    if record.status != "completed" or record.response_status != 202:
        return False
    if record.generation_id is None:
        return False
    gen = session.get(Generation, record.generation_id)
    return gen is not None and gen.status in ("failed", "cancelled")


def finish(
    session: Session,
    record_id: int,
    *,
    status_code: int,
    body: dict[str, Any],
    generation_id: str | None,
) -> None:
    session.execute(
        update(IdempotencyRecord)
        .where(col(IdempotencyRecord.id) == record_id)
        .values(
            status="completed",
            response_status=status_code,
            response_body=body,
            generation_id=generation_id,
        )
    )
    session.commit()


def attach(session: Session, record_id: int, generation_id: str) -> None:
    """Ties a claim to the generation it started (in the caller's transaction, no commit)."""
    session.execute(
        update(IdempotencyRecord)
        .where(col(IdempotencyRecord.id) == record_id)
        .values(generation_id=generation_id)
    )


def release_claims_of(session: Session, generation_id: str) -> int:
    """Forgets the in-progress claim of a generation ended elsewhere (no commit).

    Its bridge is gone, so nobody will fill it in: the client's retry runs again
    instead of meeting 409 until the record expires. A completed record (a 202
    already answered) stays, and replays.
    """
    result = session.execute(
        delete(IdempotencyRecord).where(
            col(IdempotencyRecord.generation_id) == generation_id,
            col(IdempotencyRecord.status) == "in_progress",
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def release(session: Session, record_id: int) -> None:
    """Forgets a claim whose request failed, so the client's retry runs again."""
    session.execute(delete(IdempotencyRecord).where(col(IdempotencyRecord.id) == record_id))
    session.commit()


def purge_expired(session: Session) -> int:
    result = session.execute(
        delete(IdempotencyRecord).where(col(IdempotencyRecord.expires_at) <= utcnow())
    )
    session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]
