"""Completion webhooks, the sending side: what is sent for an ended generation, queued in
the transaction that ends it, then delivered signed, retried with backoff, claimed so
each is sent once. (Storing: ``storage.webhooks``; verifying: ``genserve.webhooks``.)

Each delivery is a task of its own: a slow or dead endpoint holds only its own
delivery, never another's. One account has at most ``IN_FLIGHT_PER_ACCOUNT``
deliveries under way in a bridge, and a bridge at most ``IN_FLIGHT``, so an
account whose endpoint hangs only delays its own webhooks.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any

from sqlmodel import Session

from genserve.webhooks import HEADER, sign
from rest_bridge.background import Periodic
from rest_bridge.edge.envelope import ok
from rest_bridge.edge.errors import ApiError
from rest_bridge.generation.ended import LIVE, final_event
from rest_bridge.generation.live import LiveGeneration
from rest_bridge.outbound.address_policy import AddressPolicy
from rest_bridge.outbound.safe_fetch import post_json
from rest_bridge.state import BridgeState
from storage import generations
from storage import webhooks as store
from storage.models import Generation

log = logging.getLogger(__name__)

IN_FLIGHT = 64
IN_FLIGHT_PER_ACCOUNT = 4


def payload_for(gen: Generation, result: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """The webhook's event name and body for an ended row (``result``: its stored answer)."""
    name, data = final_event(gen, result)
    if name == "completed":
        event, body = "generation.completed", ok(data)
    else:
        event, body = "generation.failed", data
    return event, {"event": event, "generation_id": gen.id, **body}


def queue_in(session: Session, gen: Generation, result: dict[str, Any] | None) -> bool:
    """Adds the webhook of an ended row that asked for one to the caller's transaction
    (no commit); False when there is none: no URL, or its event already queued."""
    url = (gen.params or {}).get("webhook_url")
    if not isinstance(url, str) or not url:
        return False
    event, payload = payload_for(gen, result)
    if store.queued(session, gen.id, event):
        return False
    store.add(
        session,
        generation_id=gen.id,
        account_id=gen.account_id,
        url=url,
        event=event,
        payload=payload,
    )
    return True


def queue_webhook(session: Session, generation_id: str) -> bool:
    """Queues and commits the webhook of an ended generation (the bridge that ran it).

    False when there is none to send: the row still live (whoever ends it sends it),
    no URL, or already queued by the bridge that ended it (by any bridge, racing).
    """
    gen = session.get(Generation, generation_id)
    if gen is None or gen.status in LIVE:
        return False
    if not queue_in(session, gen, generations.result_of(session, gen.id)):
        return False
    return store.commit_queued(session)


class WebhookSender(Periodic):
    """One per bridge process; sends what is due, woken early when a job finishes."""

    name = "webhooks"

    def __init__(self, state: BridgeState, policy: AddressPolicy) -> None:
        super().__init__(interval_s=1.0)
        self.state = state
        self.policy = policy
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight: dict[int, int] = {}

    async def job_finished(self, job: LiveGeneration) -> None:
        """Queues the webhook of a job this process ran, built from its ended row.

        A row another bridge ended first (a cancel, the sweep) already has its webhook.
        """
        if not job.webhook_url:
            return
        if await self.state.db(queue_webhook, job.generation_id):
            self.wake()

    async def run_once(self) -> None:
        free = IN_FLIGHT - len(self._tasks)
        if free <= 0:
            return
        room = {a: IN_FLIGHT_PER_ACCOUNT - n for a, n in self._in_flight.items()}
        due = await self.state.db(
            store.claim_due, limit=free, per_account=IN_FLIGHT_PER_ACCOUNT, room=room
        )
        loop = asyncio.get_running_loop()
        for delivery, secret in due:
            account = delivery.account_id
            self._in_flight[account] = self._in_flight.get(account, 0) + 1
            task = loop.create_task(self._deliver(delivery, secret), name="webhook")
            self._tasks.add(task)

    async def _deliver(self, delivery: Any, secret: str) -> None:
        try:
            await self._send(delivery, secret)
        except Exception:
            log.exception("webhook %s could not be sent", delivery.id)
        finally:
            self._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
            left = self._in_flight.pop(delivery.account_id, 1) - 1
            if left:
                self._in_flight[delivery.account_id] = left
            self.wake()  # room for another of this account's

    async def stop(self) -> None:
        await super().stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _send(self, delivery: Any, secret: str) -> None:
        settings = self.state.settings
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        headers = [
            (HEADER, sign(secret, body)),
            ("X-Genserve-Event", delivery.event),
            ("X-Genserve-Delivery", str(delivery.id)),
        ]
        status: int | None = None
        error: str | None = None
        try:
            status = await post_json(
                delivery.url,
                body,
                headers,
                policy=self.policy,
                timeout_s=settings.webhook_timeout_s,
            )
        except ApiError as exc:
            error = exc.message
        delivered = status is not None and 200 <= status < 300
        if not delivered and error is None:
            error = f"HTTP {status}"
        attempt = delivery.attempts + 1
        retry = None
        if not delivered and attempt < settings.webhook_max_attempts:
            retry = timedelta(seconds=settings.webhook_backoff_s * 2 ** (attempt - 1))
        await self.state.db(
            store.record_attempt,
            delivery.id,
            delivered=delivered,
            status_code=status,
            error=error,
            retry_in=retry,
        )
        if not delivered:
            log.info("webhook %s attempt %d failed: %s", delivery.id, attempt, error)
