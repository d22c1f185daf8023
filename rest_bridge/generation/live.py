"""Generations running in this bridge process, with their event logs.

A live generation runs as its own task, so its work goes on (and is stored)
whatever happens to the HTTP request that started it; every way of answering
(synchronous JSON, Server-Sent Events, 202 and polling) reads the same log.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from genserve.inference.v1 import inference_pb2 as pb
from rest_bridge.edge.envelope import error_body
from rest_bridge.edge.errors import ApiError
from rest_bridge.generation.bus import Event, JobBus, LocalBus
from rest_bridge.generation.order import GenerationOrder
from rest_bridge.generation.run import CANCELLED_MESSAGE, UNEXPECTED_MESSAGE, Started, execute
from rest_bridge.state import BridgeState

log = logging.getLogger(__name__)

STAGE_NAMES = {
    pb.STAGE_LOADING: "loading",
    pb.STAGE_DENOISING: "denoising",
    pb.STAGE_DECODING: "decoding",
    pb.STAGE_ENCODING: "encoding",
}
RETAIN_FINISHED_S = 600.0
RETAIN_FINISHED_MAX = 1000
"""Finished generations kept for late readers: at most this many (the least recently finished
go first), each for at most ``RETAIN_FINISHED_S``; past either, readers get the row's answer."""
DROPPED = Event(0, "dropped", {})
"""What stays in an event log where a preview was: a newer one replaced it, or the job ended."""
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

Finisher = Callable[["LiveGeneration"], Awaitable[None]]


def sse(event: Event | None) -> bytes:
    """One Server-Sent Event; None is a comment that keeps the connection alive."""
    if event is None:
        return b": keep-alive\n\n"
    payload = json.dumps(event.data, separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.name}\ndata: {payload}\n\n".encode()


@dataclass
class LiveGeneration:
    """One generation this process runs: its task, its event log, and how it ended."""

    generation_id: str
    account_id: int
    request_id: str
    webhook_url: str | None = None
    events: list[Event] = field(default_factory=list)
    finished: bool = False
    data: dict[str, Any] | None = None
    error: ApiError | None = None
    task: asyncio.Task[None] | None = None
    bus: JobBus = field(default_factory=LocalBus)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _stage_started: dict[str, float] = field(default_factory=dict)
    _last_elapsed: float = 0.0
    _preview_at: int | None = None

    async def emit(self, name: str, data: dict[str, Any], share: bool = True) -> None:
        """Logs and wakes followers; ``share=False`` keeps the event off the shared bus."""
        event = Event(len(self.events) + 1, name, data)
        if name == "preview":
            self._drop_preview()
            self._preview_at = len(self.events)
        self.events.append(event)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        if share:
            await self.bus.publish(self.generation_id, event)

    def _drop_preview(self) -> None:
        """Forgets the retained preview: only the latest is kept, and none once the job ends."""
        if self._preview_at is not None:
            self.events[self._preview_at] = DROPPED
            self._preview_at = None

    async def fail(self, err: ApiError) -> None:
        self.error = err
        await self.emit("failed", error_body(err, self.request_id))

    async def on_progress(self, p: pb.Progress) -> None:
        """Emits the event, with the stage's remaining seconds at its mean pace so far.

        Times are the inference server's (``elapsed_seconds``, since it received the
        request). A stage began when the event before its first one was sent: the
        server's last queue position (sent as the work leaves the queue) or the end
        of the stage before. So the first step has an estimate, and none is short by
        the time the first step took.
        """
        if p.HasField("preview"):
            await self.emit_preview(p)
            return
        previous, self._last_elapsed = self._last_elapsed, p.elapsed_seconds
        if p.elapsed_seconds < previous:  # another server took the request over: restart
            self._stage_started.clear()
            previous = 0.0
        if p.stage == pb.STAGE_QUEUED:
            await self.emit("queued", {"position": p.queue_position})
            return
        stage = STAGE_NAMES.get(p.stage, "working")
        begun = self._stage_started.setdefault(stage, previous)
        eta = None
        if p.total_steps and p.step:
            spent = max(p.elapsed_seconds - begun, 0.0)
            eta = round(spent / p.step * (p.total_steps - p.step), 3)
        await self.emit(
            "progress",
            {
                "stage": stage,
                "step": p.step,
                "total": p.total_steps,
                "elapsed": round(p.elapsed_seconds, 3),
                "estimated_remaining": eta,
            },
        )

    async def emit_preview(self, p: pb.Progress) -> None:
        """A ``preview`` event: a small JPEG as a data URL, for this process's followers only.

        Previews are a few kilobytes each and stale at the next one, so they stay out
        of the shared bus (Redis streams) that every bridge reads and keeps, and the
        log keeps only the latest (a follower that falls behind skips the older ones).
        """
        await self.emit(
            "preview",
            {
                "step": p.step,
                "total": p.total_steps,
                "width": p.preview.width,
                "height": p.preview.height,
                "data_url": "data:image/jpeg;base64,"
                + base64.b64encode(p.preview.jpeg).decode("ascii"),
            },
            share=False,
        )

    async def follow(
        self, after: int = 0, heartbeat_s: float = 15.0
    ) -> AsyncIterator[Event | None]:
        """Events after ``after``, live until the job ends; None marks a quiet interval."""
        seen = after
        while True:
            while seen < len(self.events):
                seen += 1
                event = self.events[seen - 1]
                if event is not DROPPED:
                    yield event
            if self.finished:
                return
            waiter = self._changed
            try:
                await asyncio.wait_for(waiter.wait(), heartbeat_s)
            except TimeoutError:
                yield None

    def last_step(self) -> int:
        """The last denoising step reported so far (0 before the first)."""
        for event in reversed(self.events):
            if event.name == "progress" and event.data["stage"] == "denoising":
                return int(event.data["step"])
        return 0

    async def wait(self) -> None:
        while not self.finished:
            await self._changed.wait()


class LiveGenerations:
    """This process's running and recently finished generations."""

    def __init__(
        self, state: BridgeState, bus: JobBus | None = None, on_finish: Finisher | None = None
    ) -> None:
        self.state = state
        self.bus: JobBus = bus or LocalBus()
        self.jobs: dict[str, LiveGeneration] = {}
        self.finished: OrderedDict[str, None] = OrderedDict()
        self.on_finish = on_finish

    async def cancel_by_id(self, generation_id: str) -> None:
        """Another bridge asked (through the bus) to cancel a generation this one may run."""
        job = self.jobs.get(generation_id)
        if job is not None and job.task is not None and not job.finished:
            job.task.cancel()

    def launch(self, started: Started, order: GenerationOrder) -> LiveGeneration:
        gen = started.generation
        job = LiveGeneration(
            generation_id=gen.id,
            account_id=gen.account_id,
            request_id=started.request_id,
            webhook_url=order.body.webhook_url,
            bus=self.bus,
        )
        self.jobs[gen.id] = job
        job.task = asyncio.get_running_loop().create_task(
            self._run(job, started, order), name=f"generation-{gen.id}"
        )
        return job

    async def _run(self, job: LiveGeneration, started: Started, order: GenerationOrder) -> None:
        try:
            outcome = await execute(self.state, started, order, on_progress=job.on_progress)
            job.data = outcome.data
            await job.emit("completed", outcome.data)
        except ApiError as err:
            await job.fail(err)
        except asyncio.CancelledError:
            await job.fail(ApiError(409, "generation_cancelled", CANCELLED_MESSAGE))
        except Exception:  # a bug: execute has ended the row and refunded it
            log.exception("generation %s failed unexpectedly", job.generation_id)
            await job.fail(ApiError(500, "internal_error", UNEXPECTED_MESSAGE))
        finally:
            job.finished = True
            job._drop_preview()
            job._changed.set()
            self._retire(job.generation_id)
        if self.on_finish is not None:
            try:
                await self.on_finish(job)
            except Exception:
                log.exception("after-finish hook failed for %s", job.generation_id)

    def _retire(self, generation_id: str) -> None:
        """Keeps a finished job for late readers, within ``RETAIN_FINISHED_MAX`` and ``_S``."""
        self.finished[generation_id] = None
        while len(self.finished) > RETAIN_FINISHED_MAX:
            self._forget(next(iter(self.finished)))
        asyncio.get_running_loop().call_later(RETAIN_FINISHED_S, self._forget, generation_id)

    def _forget(self, generation_id: str) -> None:
        if self.finished.pop(generation_id, 0) is None:
            self.jobs.pop(generation_id, None)

    def get(self, generation_id: str) -> LiveGeneration | None:
        return self.jobs.get(generation_id)

    async def cancel(self, job: LiveGeneration) -> None:
        """Cancels the job's task: its RPC is cancelled, the server stops at the next step."""
        if job.task is not None and not job.finished:
            job.task.cancel()
        await job.wait()

    async def close(self) -> None:
        for job in list(self.jobs.values()):
            if not job.finished and job.task is not None:
                job.task.cancel()
        for job in list(self.jobs.values()):
            await job.wait()
