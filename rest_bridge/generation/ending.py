"""How an ended generation reads, from its row; and ending one that no live process runs.

The final event of a stream read back from the database, the webhook payload and
the status answer all come from the row, whichever bridge ended it. A generation
whose bridge is gone (the sweep) or which a cancel ends in place of its silent
owner is ended here: refunded, its in-progress ``Idempotency-Key`` claim released
and its webhook queued, in the one transaction that ends the row.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from rest_bridge.edge.envelope import error_body, ok
from rest_bridge.edge.errors import ApiError
from storage import generations, idempotency, points
from storage import webhooks as webhook_store
from storage.models import Generation

LIVE = ("pending", "running")


def error_code_of(gen: Generation) -> str:
    """The public code of an ended row's error: one of the error table's, whoever ended it.

    A cancelled row is ``generation_cancelled`` (rows written before this said
    ``cancelled``); a failed one without a code is ``generation_failed``.
    """
    if gen.status == "cancelled":
        return "generation_cancelled"
    return gen.error_code or "generation_failed"


def final_event(gen: Generation, result: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """``("completed", data)`` or ``("failed", error envelope)`` for an ended row."""
    if gen.status == "completed" and result is not None:
        return "completed", result
    err = ApiError(409, error_code_of(gen), gen.error_message or "The generation failed.")
    return "failed", error_body(err, gen.request_id)


def payload_for(gen: Generation, result: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """The webhook's event name and body for an ended row (``result``: its stored answer)."""
    name, data = final_event(gen, result)
    if name == "completed":
        event, body = "generation.completed", ok(data)
    else:
        event, body = "generation.failed", data
    return event, {"event": event, "generation_id": gen.id, **body}


def webhook_url_of(gen: Generation) -> str | None:
    url = (gen.params or {}).get("webhook_url")
    return url if isinstance(url, str) and url else None


def queue_webhook(session: Session, generation_id: str) -> bool:
    """Queues the webhook of an ended generation that asked for one (the bridge that ran it).

    False when there is none to send: no URL, the row still live (whoever ends it
    sends it), or already queued by the bridge that ended it.
    """
    gen = session.get(Generation, generation_id)
    if gen is None or gen.status in LIVE:
        return False
    url = webhook_url_of(gen)
    if url is None:
        return False
    event, payload = payload_for(gen, generations.result_of(session, gen.id))
    if webhook_store.queued(session, gen.id, event):
        return False
    delivery = webhook_store.enqueue(
        session,
        generation_id=gen.id,
        account_id=gen.account_id,
        url=url,
        event=event,
        payload=payload,
    )
    return delivery is not None


def _settle(session: Session, gen: Generation) -> None:
    """What the bridge that ran it would have done: release the claim, queue the webhook."""
    idempotency.release_claims_of(session, gen.id)
    url = webhook_url_of(gen)
    if url is None:
        return
    event, payload = payload_for(gen, None)
    if not webhook_store.queued(session, gen.id, event):
        webhook_store.add(
            session,
            generation_id=gen.id,
            account_id=gen.account_id,
            url=url,
            event=event,
            payload=payload,
        )


def end_unowned(
    session: Session, generation_id: str, *, status: str, code: str, message: str
) -> bool:
    """Ends a live generation that no process will finish; only the first caller acts."""
    return points.finish_unsuccessfully(
        session, generation_id, status=status, code=code, message=message, also=_settle
    )
