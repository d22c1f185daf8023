"""Housekeeping that keeps points and records right after crashes: one loop per bridge.

Every generation a bridge runs is leased to it (``owner``, ``lease_until``): each
round, a third of ``job_lease_s`` apart, the bridge extends the leases of all its
live generations in one statement, then fails and refunds any live generation
whose lease has run out, since its bridge stopped renewing it: it died. So a
dead bridge's work is refunded, its webhook sent and its idempotency claim
released within about a lease and a third, by whichever bridge looks first;
exactly once, through the row's conditional update.

Every ``maintenance_interval_s`` the full sweep also ends what no lease covers (rows
from before leases): a generation still live long after its deadline cannot be
running anywhere, since its RPC would have timed out. Expired idempotency records
are purged.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from rest_bridge.background import Periodic
from rest_bridge.generation.ending import end_unowned
from rest_bridge.generation.kinds import KINDS
from rest_bridge.state import BridgeState
from storage import generations, idempotency
from storage.models import utcnow

log = logging.getLogger(__name__)

GRACE = timedelta(seconds=60)
ABANDONED_MESSAGE = "The server stopped before this generation finished; its points were refunded."


class Maintenance(Periodic):
    name = "maintenance"

    def __init__(self, state: BridgeState) -> None:
        settings = state.settings
        super().__init__(interval_s=min(settings.job_lease_s / 3, settings.maintenance_interval_s))
        self.state = state
        self._next_sweep = 0.0

    def deadlines(self) -> dict[str, float]:
        return {kind: unit.timeout_s(self.state.settings) for kind, unit in KINDS.items()}

    async def renew_leases(self) -> int:
        """Extends the leases of this process's live generations; returns how many."""
        until = utcnow() + timedelta(seconds=self.state.settings.job_lease_s)
        return await self.state.db(generations.renew_leases, self.state.instance_id, until)

    async def end_expired_leases(self) -> int:
        """Ends and refunds live generations whose bridge stopped renewing them."""
        expired = await self.state.db(generations.lease_expired, utcnow())
        ended = await self._end_abandoned(expired)
        if ended:
            log.warning("refunded %d generations whose bridge stopped renewing them", ended)
        return ended

    async def sweep(self) -> int:
        """Ends and refunds generations live past their deadline; returns how many it ended."""
        ended = 0
        for kind, timeout_s in self.deadlines().items():
            cutoff = utcnow() - timedelta(seconds=timeout_s) - GRACE
            ended += await self._end_abandoned(
                await self.state.db(generations.live_before, kind, cutoff)
            )
        if ended:
            log.warning("refunded %d abandoned generations", ended)
        await self.state.db(idempotency.purge_expired)
        return ended

    async def _end_abandoned(self, generation_ids: list[str]) -> int:
        ended = 0
        for generation_id in generation_ids:
            if await self.state.db(
                end_unowned,
                generation_id,
                status="failed",
                code="generation_abandoned",
                message=ABANDONED_MESSAGE,
            ):
                ended += 1
        return ended

    async def run_once(self) -> None:
        # Renew first: this process's own leases are then never the ones found expired.
        await self.renew_leases()
        await self.end_expired_leases()
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + self.state.settings.maintenance_interval_s
            await self.sweep()
