"""Generations and their assets: written pending, ended completed or failed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import Session, col, func, select

from storage.models import UNSYNCHRONISED, Asset, Generation, GenerationResult, utcnow


def complete(
    session: Session,
    generation_id: str,
    assets: Sequence[Asset],
    generation_time_ms: int,
    result: dict[str, Any] | None = None,
) -> bool:
    """Records the stored files and marks the generation completed, atomically.

    False when the generation was no longer live (cancelled meanwhile): the
    caller then removes the files it stored.
    """
    updated = session.execute(
        update(Generation)
        .where(
            col(Generation.id) == generation_id,
            col(Generation.status).in_(("pending", "running")),
        )
        .values(status="completed", completed_at=utcnow(), generation_time_ms=generation_time_ms)
        .execution_options(**UNSYNCHRONISED)
    )
    if not updated.rowcount:  # type: ignore[attr-defined]
        session.rollback()
        return False
    session.add_all(assets)
    if result is not None:
        session.add(GenerationResult(generation_id=generation_id, data=result))
    session.commit()
    return True


def mark_running(session: Session, generation_id: str) -> None:
    session.execute(
        update(Generation)
        .where(col(Generation.id) == generation_id, col(Generation.status) == "pending")
        .values(status="running")
        .execution_options(**UNSYNCHRONISED)
    )
    session.commit()


def get_owned(session: Session, generation_id: str, account_id: int) -> Generation | None:
    gen = session.get(Generation, generation_id)
    if gen is None or gen.account_id != account_id or gen.status == DELETED:
        return None
    return gen


DELETED = "deleted"
"""A project its owner deleted: files and stored answer gone, prompt and parameters cleared;
the row stays for the points ledger's history and reads as absent everywhere."""


def delete_project(session: Session, generation_id: str, account_id: int) -> list[str] | None:
    """Deletes the account's completed generation: its asset rows and stored answer go, the
    row is marked deleted. The blob keys of its files (for the caller to delete), or None
    when the account has no such project (another account's included)."""
    taken = session.execute(
        update(Generation)
        .where(
            col(Generation.id) == generation_id,
            col(Generation.account_id) == account_id,
            col(Generation.status) == "completed",
        )
        .values(status=DELETED, prompt="", params={})
    )
    if not taken.rowcount:  # type: ignore[attr-defined]
        session.rollback()
        return None
    keys = list(
        session.exec(select(Asset.blob_key).where(Asset.generation_id == generation_id)).all()
    )
    session.execute(delete(Asset).where(col(Asset.generation_id) == generation_id))
    session.execute(
        delete(GenerationResult).where(col(GenerationResult.generation_id) == generation_id)
    )
    session.commit()
    return keys


def assets_of(session: Session, generation_ids: Sequence[str]) -> dict[str, list[Asset]]:
    by_generation: dict[str, list[Asset]] = defaultdict(list)
    if not generation_ids:
        return by_generation
    rows = session.exec(
        select(Asset)
        .where(col(Asset.generation_id).in_(generation_ids))
        .order_by(col(Asset.role), col(Asset.index))
    ).all()
    for asset in rows:
        by_generation[asset.generation_id].append(asset)
    return by_generation


def primary_blob_keys(session: Session, generation_id: str) -> list[str]:
    """The store keys of a generation's primary files, in their order."""
    rows = session.exec(
        select(Asset)
        .where(Asset.generation_id == generation_id, Asset.role == "primary")
        .order_by(col(Asset.index))
    ).all()
    return [a.blob_key for a in rows]


def list_projects(
    session: Session,
    *,
    account_id: int,
    kind: str | None,
    page: int,
    limit: int,
    descending: bool,
    text: str | None = None,
) -> tuple[list[Generation], int]:
    """One page of the account's completed generations, and how many there are in all;
    ``text``: only those whose prompt holds it (any case, taken literally)."""
    where = [col(Generation.account_id) == account_id, col(Generation.status) == "completed"]
    if kind is not None:
        where.append(col(Generation.kind) == kind)
    if text:
        where.append(func.lower(col(Generation.prompt)).contains(text.lower(), autoescape=True))
    total = session.exec(select(func.count()).select_from(Generation).where(*where)).one()
    order = col(Generation.created_at).desc() if descending else col(Generation.created_at).asc()
    tie = col(Generation.id).desc() if descending else col(Generation.id).asc()
    rows = session.exec(
        select(Generation)
        .where(*where)
        .order_by(order, tie)
        .offset((page - 1) * limit)
        .limit(limit)
    ).all()
    return list(rows), int(total)


def result_of(session: Session, generation_id: str) -> dict[str, Any] | None:
    row = session.get(GenerationResult, generation_id)
    return row.data if row is not None else None


def live_before(session: Session, kind: str, cutoff: datetime) -> list[str]:
    """Generations of ``kind`` still pending or running although started before ``cutoff``."""
    return list(
        session.exec(
            select(Generation.id).where(
                col(Generation.kind) == kind,
                col(Generation.status).in_(("pending", "running")),
                col(Generation.created_at) < cutoff,
            )
        ).all()
    )


def renew_leases(session: Session, owner: str, until: datetime) -> int:
    """Extends the lease of every live generation ``owner`` runs, in one statement."""
    result = session.execute(
        update(Generation)
        .where(
            col(Generation.owner) == owner,
            col(Generation.status).in_(("pending", "running")),
        )
        .values(lease_until=until)
    )
    session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


def lease_expired(session: Session, now: datetime) -> list[str]:
    """Live generations whose owner stopped renewing their lease before ``now``."""
    return list(
        session.exec(
            select(Generation.id).where(
                col(Generation.status).in_(("pending", "running")),
                col(Generation.lease_until).is_not(None),
                col(Generation.lease_until) < now,
            )
        ).all()
    )


def status_counts(session: Session, account_id: int) -> dict[str, int]:
    """An account's generations by status (the load test's check that none stays live)."""
    rows = session.exec(
        select(Generation.status, func.count())
        .where(col(Generation.account_id) == account_id)
        .group_by(col(Generation.status))
    ).all()
    return {status: int(n) for status, n in rows}
