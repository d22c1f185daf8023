"""Ending a generation that no live process runs.

A generation whose bridge is gone (the sweep) or which a cancel ends in place of
its silent owner is ended here: refunded, its in-progress ``Idempotency-Key``
claim released and its webhook queued, in the one transaction that ends the row.
"""

from __future__ import annotations

from sqlmodel import Session

from rest_bridge.outbound.webhooks import queue_in
from storage import idempotency, points
from storage.models import Generation


def _settle(session: Session, gen: Generation) -> None:
    """What the bridge that ran it would have done: release the claim, queue the webhook."""
    idempotency.release_claims_of(session, gen.id)
    queue_in(session, gen, None)


def end_unowned(
    session: Session, generation_id: str, *, status: str, code: str, message: str
) -> bool:
    """Ends a live generation that no process will finish; only the first caller acts."""
    return points.finish_unsuccessfully(
        session, generation_id, status=status, code=code, message=message, also=_settle
    )
