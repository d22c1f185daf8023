"""How a generation is answered: JSON when done, Server-Sent Events, or 202 and a status URL.

Every mode runs the same live generation (``live.py``). ``Idempotency-Key`` makes a retry
safe in each of them: the first request claims the key; a retry with the
same body gets the stored answer, one with another body 422, and one that
arrives while the first still runs 409.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from rest_bridge.callers.keys import Caller
from rest_bridge.edge.envelope import ok, request_id
from rest_bridge.edge.errors import ApiError, validation_error
from rest_bridge.generation.base import GenerationBody, GenerationKind
from rest_bridge.generation.live import SSE_HEADERS, LiveGeneration, LiveGenerations, sse
from rest_bridge.generation.order import order_for
from rest_bridge.generation.run import begin
from rest_bridge.outbound.safe_fetch import check_url
from rest_bridge.state import BridgeState
from storage import idempotency
from storage.models import IdempotencyRecord

MAX_IDEMPOTENCY_KEY = 255


def live_of(request: Request) -> LiveGenerations:
    live: LiveGenerations = request.app.state.live
    return live


def wants_events(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


def wants_async(request: Request) -> bool:
    prefer = request.headers.get("prefer", "")
    return any(p.strip().lower() == "respond-async" for p in prefer.split(","))


def status_urls(state: BridgeState, generation_id: str) -> dict[str, str]:
    base = f"{state.settings.base_url}/api/v1/generations/{generation_id}"
    return {"status_url": base, "events_url": f"{base}/events", "cancel_url": f"{base}/cancel"}


def request_digest(request: Request, body: GenerationBody) -> str:
    """What a retry must repeat: method, path, answer mode and the parsed body.

    The body is compared as parsed (canonical JSON of the validated fields, defaults
    filled in), so other whitespace, another key order or ``2.0`` for ``2`` is the
    same request.
    """
    mode = "events" if wants_events(request) else "async" if wants_async(request) else "sync"
    canonical = json.dumps(
        body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    parts = [request.method, request.url.path, mode, canonical]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _replayed(record: IdempotencyRecord) -> JSONResponse:
    """The stored answer, under the first request's id (``request_id`` in the body and
    ``X-Request-ID`` agree, as on every answer)."""
    stored = record.response_body or {}
    data = stored.get("data")
    first_id = data.get("request_id") if isinstance(data, dict) else None
    headers = {"Idempotent-Replayed": "true"}
    if isinstance(first_id, str):
        headers["X-Request-ID"] = first_id
    return JSONResponse(stored, status_code=record.response_status or 200, headers=headers)


async def _claim_key(
    request: Request, state: BridgeState, caller: Caller, body: GenerationBody
) -> tuple[IdempotencyRecord | None, Response | None]:
    """Our claim on the request's Idempotency-Key, or the answer a retry gets instead."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None, None
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or not key.isprintable():
        message = f"must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters"
        raise ApiError(
            400,
            "invalid_request",
            f"Idempotency-Key: {message}",
            details=[{"field": "Idempotency-Key", "message": message}],
        )
    # A 3D body carries up to 20 MB of base64: serialising it is CPU work, off the loop.
    digest = await run_in_threadpool(request_digest, request, body)
    claim = await state.db(
        idempotency.claim, account_id=caller.account_id, key=key, request_hash=digest
    )
    record = claim.record
    if claim.fresh:
        return record, None
    if record.request_hash != digest:
        raise validation_error(
            "Idempotency-Key", "was already used with a different request; use a new key"
        )
    if record.status != "completed" or record.response_body is None:
        raise ApiError(
            409,
            "idempotency_conflict",
            "A request with this Idempotency-Key is still running; retry when it has finished.",
            headers={"Retry-After": "1"},
        )
    return None, _replayed(record)


async def respond(
    request: Request,
    state: BridgeState,
    caller: Caller,
    unit: GenerationKind[Any],
    body: GenerationBody,
) -> Response:
    """Validates, starts the generation (debit included) and answers in the mode asked for."""
    if body.webhook_url:
        await check_url(body.webhook_url, policy=state.settings.fetch_policy(), field="webhook_url")
    record, replay = await _claim_key(request, state, caller, body)
    if replay is not None:
        return replay
    try:
        order = await order_for(state, unit, body, request_id(request), caller.account_id)
        started = await begin(state, caller, order, record.id if record is not None else None)
    except BaseException:
        if record is not None:
            await asyncio.shield(state.db(idempotency.release, record.id))
        raise
    job = live_of(request).launch(started, order)
    if wants_async(request):
        return await _accepted(state, job, record)
    if wants_events(request):
        return _event_stream(request, state, job, record)
    return await _when_done(request, state, job, record)


async def _remember(
    state: BridgeState,
    record: IdempotencyRecord | None,
    status: int,
    body: dict[str, Any],
    job: LiveGeneration,
) -> None:
    if record is not None and record.id is not None:
        await state.db(
            idempotency.finish,
            record.id,
            status_code=status,
            body=body,
            generation_id=job.generation_id,
        )


async def _forget(state: BridgeState, record: IdempotencyRecord | None) -> None:
    if record is not None and record.id is not None:
        await state.db(idempotency.release, record.id)


async def _accepted(
    state: BridgeState, job: LiveGeneration, record: IdempotencyRecord | None
) -> Response:
    urls = status_urls(state, job.generation_id)
    answer = ok(
        {
            "generation_id": job.generation_id,
            "status": "pending",
            **urls,
            "request_id": job.request_id,
        }
    )
    await _remember(state, record, 202, answer, job)
    return JSONResponse(
        answer,
        status_code=202,
        headers={"Location": urls["status_url"], "Preference-Applied": "respond-async"},
    )


async def _disconnected(request: Request) -> None:
    """Returns when the client closes its connection (the body was already read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _when_done(
    request: Request, state: BridgeState, job: LiveGeneration, record: IdempotencyRecord | None
) -> Response:
    """Waits for the job; a client that goes away first cancels it (and is refunded)."""
    finished = asyncio.ensure_future(job.wait())
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({finished, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not job.finished:
        await live_of(request).cancel(job)
        await _forget(state, record)
        return Response(status_code=499)
    if job.error is not None:
        await _forget(state, record)
        raise job.error
    answer = ok(job.data)
    await _remember(state, record, 200, answer, job)
    return JSONResponse(answer)


def _event_stream(
    request: Request, state: BridgeState, job: LiveGeneration, record: IdempotencyRecord | None
) -> StreamingResponse:
    manager = live_of(request)

    async def events() -> AsyncIterator[bytes]:
        try:
            async for event in job.follow(0, state.settings.sse_heartbeat_s):
                yield sse(event)
        finally:
            if not job.finished:
                # The client went away mid-stream: stop the work and refund it.
                await asyncio.shield(manager.cancel(job))
                await asyncio.shield(_forget(state, record))
            elif job.error is None and job.data is not None:
                await asyncio.shield(_remember(state, record, 200, ok(job.data), job))
            else:
                await asyncio.shield(_forget(state, record))

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)
