"""Housekeeping that keeps points and records right after crashes: one loop per bridge.

A generation still pending long after its deadline cannot be running anywhere
(its RPC would have timed out), so its bridge died with it: it is failed and
refunded here, exactly once even with several bridges sweeping. Expired
idempotency records are purged.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from rest_bridge.background import Periodic
from rest_bridge.generation.kinds import KINDS
from rest_bridge.state import BridgeState
from storage import generations, idempotency, points
from storage.models import utcnow

log = logging.getLogger(__name__)

GRACE = timedelta(seconds=60)


class Maintenance(Periodic):
    name = "maintenance"

    def __init__(self, state: BridgeState) -> None:
        super().__init__(interval_s=state.settings.maintenance_interval_s)
        self.state = state

    def deadlines(self) -> dict[str, float]:
        return {kind: unit.timeout_s(self.state.settings) for kind, unit in KINDS.items()}

    async def sweep(self) -> int:
        """Ends and refunds abandoned generations; returns how many this call ended."""
        ended = 0
        for kind, timeout_s in self.deadlines().items():
            cutoff = utcnow() - timedelta(seconds=timeout_s) - GRACE
            for generation_id in await self.state.db(generations.live_before, kind, cutoff):
                if await self.state.db(
                    points.finish_unsuccessfully,
                    generation_id,
                    status="failed",
                    code="generation_abandoned",
                    message="The server stopped before this generation finished; "
                    "its points were refunded.",
                ):
                    ended += 1
        if ended:
            log.warning("refunded %d abandoned generations", ended)
        await self.state.db(idempotency.purge_expired)
        return ended

    async def run_once(self) -> None:
        await self.sweep()
