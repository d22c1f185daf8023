"""Progress events and cancellation shared by every bridge, through Redis when it is configured.

The bridge that runs a generation appends each event to a Redis stream of its
own (``<prefix>:events:<generation id>``, kept ten minutes), so any bridge can
stream it live or resume it; a cancel reaching another bridge is published on
``<prefix>:cancel`` and the bridge that holds the RPC cancels it, which stops
the GPU work at its next step. Without Redis there is one bridge, and the
process's own memory does all of this (``LocalBus``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

RETAIN_S = 600
TERMINAL = ("completed", "failed")

CancelHandler = Callable[[str], Awaitable[None]]


@dataclass
class Event:
    id: int
    name: str  # queued | progress | completed | failed
    data: dict[str, Any]


class LocalBus:
    """One bridge: nothing to share."""

    shared = False

    async def publish(self, generation_id: str, event: Event) -> None:
        return None

    async def latest(self, generation_id: str) -> Event | None:
        return None

    async def follow(
        self, generation_id: str, after: int, heartbeat_s: float
    ) -> AsyncIterator[Event | None]:
        """Nothing to follow: the caller falls back on the database."""
        return
        yield  # pragma: no cover

    async def request_cancel(self, generation_id: str) -> bool:
        return False

    def start(self, on_cancel: CancelHandler) -> None:
        return None

    async def stop(self) -> None:
        return None


class RedisBus:
    """Events in Redis streams, cancels on a pub/sub channel."""

    shared = True

    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as aioredis

        self.redis: Any = aioredis.Redis.from_url(url)  # its stubs type replies loosely
        self.prefix = prefix
        self.channel = f"{prefix}:cancel"
        self._listener: asyncio.Task[None] | None = None

    def _key(self, generation_id: str) -> str:
        return f"{self.prefix}:events:{generation_id}"

    async def publish(self, generation_id: str, event: Event) -> None:
        """Appends the event; a Redis outage costs other bridges the live view, never the work."""
        fields = {"id": str(event.id), "name": event.name, "data": json.dumps(event.data)}
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(self._key(generation_id), fields)  # type: ignore[arg-type]
                pipe.expire(self._key(generation_id), RETAIN_S)
                await pipe.execute()
        except Exception as exc:
            log.warning("could not share event %s of %s: %s", event.id, generation_id, exc)

    @staticmethod
    def _event(fields: Any) -> Event:
        return Event(
            int(fields[b"id"]), fields[b"name"].decode(), json.loads(fields[b"data"].decode())
        )

    async def latest(self, generation_id: str) -> Event | None:
        rows = await self.redis.xrevrange(self._key(generation_id), count=1)
        return self._event(rows[0][1]) if rows else None

    async def follow(
        self, generation_id: str, after: int, heartbeat_s: float
    ) -> AsyncIterator[Event | None]:
        """Events after ``after`` until the terminal one; None marks a quiet interval."""
        key, last = self._key(generation_id), b"0-0"
        while True:
            reply = await self.redis.xread({key: last}, count=100, block=int(heartbeat_s * 1000))
            if not reply:
                yield None
                continue
            for entry_id, fields in reply[0][1]:
                last = entry_id
                event = self._event(fields)
                if event.id > after:
                    yield event
                if event.name in TERMINAL:
                    return

    async def request_cancel(self, generation_id: str) -> bool:
        """Asks the bridge that runs it to cancel; True when some bridge listens."""
        receivers: int = await self.redis.publish(self.channel, generation_id)
        return receivers > 0

    def start(self, on_cancel: CancelHandler) -> None:
        self._listener = asyncio.get_running_loop().create_task(
            self._listen(on_cancel), name="cancel-listener"
        )

    async def _listen(self, on_cancel: CancelHandler) -> None:
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await on_cancel(message["data"].decode())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cancel listener lost Redis (%s); retrying", exc)
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except asyncio.CancelledError:
                pass
        await self.redis.aclose()


JobBus = LocalBus | RedisBus


def bus_for(redis_url: str | None, prefix: str) -> JobBus:
    return RedisBus(redis_url, prefix) if redis_url else LocalBus()
