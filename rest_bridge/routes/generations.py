"""One generation: its status and answer, its event stream (resumable), and cancelling it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from rest_bridge.callers.keys import CurrentCaller, StateDep
from rest_bridge.edge.answers import (
    SSE_EVENT_SCHEMA,
    CancelAnswer,
    GenerationStatus,
    Ok,
    error_responses,
)
from rest_bridge.edge.envelope import ok
from rest_bridge.edge.errors import ApiError
from rest_bridge.edge.views import iso
from rest_bridge.generation.bus import Event, JobBus
from rest_bridge.generation.ended import LIVE, error_code_of, final_event
from rest_bridge.generation.ending import end_unowned
from rest_bridge.generation.live import SSE_HEADERS, sse
from rest_bridge.generation.respond import live_of
from rest_bridge.state import BridgeState
from storage import generations
from storage.models import Generation

router = APIRouter(prefix="/api/v1/generations", tags=["generations"])

POLL_S = 1.0
CANCEL_WAIT_S = 10.0
"""How long a cancel waits for the bridge that runs the generation to stop it."""


GENERATION_ID = re.compile(r"[0-9a-f]{24}")
"""A generation id as the contract writes it; anything else cannot exist (404, no query)."""
EVENT_ID = re.compile(r"[0-9]{1,18}")
"""A ``Last-Event-ID`` this bridge sent (``final`` aside); anything else resumes from the start."""


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


async def _owned(state: BridgeState, generation_id: str, account_id: int) -> Generation:
    if not GENERATION_ID.fullmatch(generation_id):
        raise ApiError(404, "not_found", "No generation with that id.")
    gen = await state.db(generations.get_owned, generation_id, account_id)
    if gen is None:
        raise ApiError(404, "not_found", "No generation with that id.")
    return gen


def _final_event(gen: Generation, result: dict[str, Any] | None) -> Event:
    return Event(0, *final_event(gen, result))


@router.get("/{generation_id}", response_model=Ok[GenerationStatus], responses=error_responses())
async def get_generation(
    generation_id: str, request: Request, caller: CurrentCaller, state: StateDep
) -> dict[str, Any]:
    gen = await _owned(state, generation_id, caller.account_id)
    data: dict[str, Any] = {}
    if gen.status == "completed":
        stored = await state.db(generations.result_of, gen.id)
        data.update(stored or {})
    data.update(
        generation_id=gen.id,
        type=gen.kind,
        model=gen.model,
        status=gen.status,
        created_at=iso(gen.created_at),
        completed_at=iso(gen.completed_at) if gen.completed_at else None,
    )
    if gen.status in LIVE:
        latest = await _latest_progress(request, gen.id)
        data["progress"] = {"event": latest.name, **latest.data} if latest else None
    if gen.status in ("failed", "cancelled"):
        data["error"] = {"code": error_code_of(gen), "message": gen.error_message}
    return ok(data)


async def _latest_progress(request: Request, generation_id: str) -> Event | None:
    """The last queued or progress event, from this process or from the shared bus."""
    live = live_of(request)
    job = live.get(generation_id)
    events = job.events if job is not None else []
    if job is None:
        try:
            shared = await live.bus.latest(generation_id)
        except Exception:  # Redis away: the row's status still answers
            shared = None
        events = [shared] if shared is not None else []
    return next((e for e in reversed(events) if e.name in ("progress", "queued")), None)


@router.get(
    "/{generation_id}/events",
    response_class=EventStream,
    responses={
        200: {
            "description": "The generation's events, as Server-Sent Events.",
            "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
        },
        **error_responses(non_json_route=True),
    },
)
async def generation_events(
    generation_id: str,
    request: Request,
    caller: CurrentCaller,
    state: StateDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-Sent Events; ``Last-Event-ID`` resumes after the event it names."""
    gen = await _owned(state, generation_id, caller.account_id)
    after = int(last_event_id) if last_event_id and EVENT_ID.fullmatch(last_event_id) else 0
    job = live_of(request).get(gen.id)
    heartbeat = state.settings.sse_heartbeat_s

    async def from_job() -> AsyncIterator[bytes]:
        assert job is not None
        async for event in job.follow(after, heartbeat):
            yield sse(event)

    async def from_bus() -> AsyncIterator[bytes]:
        """Another bridge runs it: its events through the shared bus, live.

        A quiet interval also looks at the row, so a stream whose bridge died
        still ends with the row's final event (the sweep ends such rows).
        """
        async for event in live_of(request).bus.follow(gen.id, after, heartbeat):
            if event is not None:
                yield sse(event)
                continue
            current = await _owned(state, generation_id, caller.account_id)
            if current.status not in LIVE:
                async for final in from_database(current):
                    yield final
                return
            yield sse(None)

    async def from_database(current: Generation = gen) -> AsyncIterator[bytes]:
        """Another process runs it (or ran it): follow its row until it ends."""
        waited = 0.0
        while current.status in LIVE:
            await asyncio.sleep(POLL_S)
            waited += POLL_S
            if waited >= heartbeat:
                waited = 0.0
                yield sse(None)
            current = await _owned(state, generation_id, caller.account_id)
        if last_event_id == "final":
            return
        result = await state.db(generations.result_of, current.id)
        event = _final_event(current, result)
        payload = sse(event).replace(b"id: 0\n", b"id: final\n")
        yield payload

    if job is not None:
        stream = from_job()
    elif live_of(request).bus.shared and gen.status in LIVE:
        stream = from_bus()
    else:
        stream = from_database()
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


@router.post(
    "/{generation_id}/cancel", response_model=Ok[CancelAnswer], responses=error_responses()
)
async def cancel_generation(
    generation_id: str, request: Request, caller: CurrentCaller, state: StateDep
) -> dict[str, Any]:
    gen = await _owned(state, generation_id, caller.account_id)
    if gen.status not in LIVE:
        raise ApiError(
            409, "generation_finished", f"The generation has already ended ({gen.status})."
        )
    live = live_of(request)
    job = live.get(gen.id)
    step_at_cancel = None
    if job is not None:
        step_at_cancel = job.last_step()
        await live.cancel(job)
    else:
        step_at_cancel = await _cancel_elsewhere(state, live.bus, gen)
    final = await _owned(state, generation_id, caller.account_id)
    return ok(
        {
            "generation_id": final.id,
            "status": final.status,
            "refunded_points": final.points_cost if final.status == "cancelled" else 0,
            "step_at_cancel": step_at_cancel,
        }
    )


async def _cancel_elsewhere(state: BridgeState, bus: JobBus, gen: Generation) -> int | None:
    """Cancels a generation another bridge runs; returns the last denoising step seen.

    Through the bus, the bridge that holds the RPC cancels it (the GPU stops at
    its next step) and ends the row, refunding it. When no bridge answers in
    time (none listens, or the owner is gone), the row is ended and refunded
    here, with its webhook queued and its idempotency claim released; the
    exactly-once refund is the row's conditional update either way.
    """
    latest = None
    try:
        latest = await bus.latest(gen.id)
        asked = await bus.request_cancel(gen.id)
    except Exception:
        asked = False
    step = None
    if latest is not None and latest.data.get("stage") == "denoising":
        step = int(latest.data.get("step", 0))
    if asked:
        deadline = asyncio.get_running_loop().time() + CANCEL_WAIT_S
        while asyncio.get_running_loop().time() < deadline:
            current = await state.db(generations.get_owned, gen.id, gen.account_id)
            if current is None or current.status not in LIVE:
                return step
            await asyncio.sleep(0.05)
    await state.db(
        end_unowned,
        gen.id,
        status="cancelled",
        code="generation_cancelled",
        message="The generation was cancelled.",
    )
    return step
