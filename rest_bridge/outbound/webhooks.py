"""Delivers completion webhooks: signed, retried with backoff, claimed so each is sent once."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any

from genserve.webhooks import HEADER, sign
from rest_bridge.background import Periodic
from rest_bridge.edge.errors import ApiError
from rest_bridge.generation.ending import queue_webhook
from rest_bridge.generation.live import LiveGeneration
from rest_bridge.outbound.address_policy import AddressPolicy
from rest_bridge.outbound.safe_fetch import post_json
from rest_bridge.state import BridgeState
from storage import webhooks as store

log = logging.getLogger(__name__)


class WebhookSender(Periodic):
    """One per bridge process; sends what is due, woken early when a job finishes."""

    name = "webhooks"

    def __init__(self, state: BridgeState, policy: AddressPolicy) -> None:
        super().__init__(interval_s=1.0)
        self.state = state
        self.policy = policy

    async def job_finished(self, job: LiveGeneration) -> None:
        """Queues the webhook of a job this process ran, built from its ended row.

        A row another bridge ended first (a cancel, the sweep) already has its webhook.
        """
        if not job.webhook_url:
            return
        if await self.state.db(queue_webhook, job.generation_id):
            self.wake()

    async def run_once(self) -> None:
        due = await self.state.db(store.claim_due)
        await asyncio.gather(*(self._send(d, secret) for d, secret in due))

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
