"""Runs one generation for a caller: debit, RPC, store, complete or refund.

Shared by every kind. ``begin`` writes the row pending together with the
debit (so a 402 comes before any 202); ``execute`` runs the RPC, marks the
row running when the model starts, stores the files and completes the row.
The row always ends completed, failed or cancelled; files are stored before
the row says completed and removed if it cannot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

import grpc
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from genserve.inference.v1 import inference_pb2 as pb
from rest_bridge.callers.keys import Caller
from rest_bridge.edge.errors import ApiError
from rest_bridge.edge.metrics import METRICS
from rest_bridge.generation.base import GenerationOutcome
from rest_bridge.generation.order import GenerationOrder, insufficient_points
from rest_bridge.link.channels import CollectedFile, ProgressHook, rest_error
from rest_bridge.state import BridgeState
from storage import generations, points
from storage.blobs import StoreUnavailable
from storage.models import Asset, Generation, new_asset_token, utcnow

log = logging.getLogger(__name__)


ROLE_NAMES: dict[int, str] = {
    pb.ARTIFACT_ROLE_PRIMARY: "primary",
    pb.ARTIFACT_ROLE_PREVIEW: "preview",
}


@dataclass
class Started:
    """A generation whose row is written and whose points are taken."""

    generation: Generation
    remaining_points: int
    request_id: str
    plan: str = "free"
    """The caller's plan: the inference queue runs higher plans first."""


async def begin(
    state: BridgeState, caller: Caller, order: GenerationOrder, claim_id: int | None = None
) -> Started:
    """Writes the pending row and debits it; 402 before any RPC when points are short.

    The row is leased to this process (renewed while it runs, see ``maintenance``);
    ``claim_id``, the request's idempotency record, is tied to it in the same transaction.
    """
    gen = Generation(
        account_id=caller.account_id,
        api_key_id=caller.key_id,
        kind=order.unit.kind,
        model=order.model.name,
        prompt=order.prompt,
        params=order.params,
        points_cost=order.cost,
        request_id=order.request_id,
        owner=state.instance_id,
        lease_until=utcnow() + timedelta(seconds=state.settings.job_lease_s),
    )
    try:
        remaining = await state.db(points.start_generation, gen, claim_id=claim_id)
    except points.InsufficientPoints as exc:
        raise insufficient_points(exc.needed, exc.balance) from exc
    return Started(
        generation=gen,
        remaining_points=remaining,
        request_id=order.request_id,
        plan=caller.plan,
    )


CANCELLED_MESSAGE = "The generation was cancelled."
UNEXPECTED_MESSAGE = "An unexpected error occurred; its points were refunded."


async def execute(
    state: BridgeState,
    started: Started,
    order: GenerationOrder,
    on_progress: ProgressHook | None = None,
) -> GenerationOutcome:
    """``_execute``, counted by kind and outcome on ``/metrics`` and logged when it ends."""
    with METRICS.generation(order.unit.kind, started.generation.id):
        return await _execute(state, started, order, on_progress)


async def _execute(
    state: BridgeState,
    started: Started,
    order: GenerationOrder,
    on_progress: ProgressHook | None = None,
) -> GenerationOutcome:
    """Runs the RPC, stores the files and completes the row with its answer.

    Every failure ends the row (failed, or cancelled when this task is
    cancelled) and refunds it exactly once before the error propagates.
    """
    gen = started.generation
    t0 = time.perf_counter()
    try:
        result = await state.client.generate(
            order.model,
            order.unit.rpc,
            order.request,
            order.timeout_s,
            _marking_running(state, gen.id, on_progress),
            caller=(gen.account_id, started.plan),
        )
    except grpc.aio.AioRpcError as exc:
        err = rest_error(exc, state.settings.retry_after_s)
        cancelled = exc.code() == grpc.StatusCode.CANCELLED
        # The row (and so GET, events and webhooks) gets the public message; the details,
        # which may name sockets, hosts or paths, go to the operator's log.
        log.log(
            logging.INFO if cancelled else logging.WARNING,
            "generation %s: inference answered %s: %s",
            gen.id,
            exc.code().name,
            exc.details(),
        )
        await _end(state, gen.id, "cancelled" if cancelled else "failed", err.code, err.message)
        raise err from exc
    except asyncio.CancelledError:
        await asyncio.shield(
            _end(state, gen.id, "cancelled", "generation_cancelled", CANCELLED_MESSAGE)
        )
        raise
    except ApiError as err:
        await _end(state, gen.id, "failed", err.code, err.message)
        raise
    except Exception:
        await asyncio.shield(_end(state, gen.id, "failed", "internal_error", UNEXPECTED_MESSAGE))
        raise
    elapsed_ms = int((time.perf_counter() - t0) * 1000)
    stored = _assets_for(order, gen, result.files)
    outcome = GenerationOutcome(
        generation=gen,
        assets=[asset for asset, _ in stored],
        remaining_points=started.remaining_points,
        generation_time_ms=elapsed_ms,
        seed=result.completion.seed,
    )
    try:
        outcome.data = order.unit.answer(state, order.body, order.model, outcome)
    except ApiError as err:  # the stream lacked what the answer needs
        await _end(state, gen.id, "failed", err.code, err.message)
        raise
    except Exception:
        await asyncio.shield(_end(state, gen.id, "failed", "internal_error", UNEXPECTED_MESSAGE))
        raise
    await _store(state, outcome, stored)
    return outcome


def _marking_running(
    state: BridgeState, generation_id: str, on_progress: ProgressHook | None
) -> ProgressHook:
    """Passes progress on, and marks the row running at the first event past the queue."""
    running = False

    async def hook(progress: pb.Progress) -> None:
        nonlocal running
        if not running and progress.stage != pb.STAGE_QUEUED:
            running = True
            await state.db(generations.mark_running, generation_id)
        if on_progress is not None:
            await on_progress(progress)

    return hook


async def _end(
    state: BridgeState, generation_id: str, status: str, code: str, message: str
) -> None:
    await state.db(
        points.finish_unsuccessfully, generation_id, status=status, code=code, message=message
    )


INPUT_CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def _assets_for(
    order: GenerationOrder, gen: Generation, files: list[CollectedFile]
) -> list[tuple[Asset, bytes]]:
    """The outputs' assets and then the caller's inputs' (role ``input``, ``mask``), each
    with the bytes it stores."""
    assets = []
    for f in files:
        token = new_asset_token()
        preview = f.role == pb.ARTIFACT_ROLE_PREVIEW
        name = order.unit.file_name(gen.id, f.index, preview, f.file_name)
        asset = Asset(
            generation_id=gen.id,
            index=f.index,
            role=ROLE_NAMES.get(f.role, "primary"),
            token=token,
            blob_key=f"{token}/{name}",
            file_name=name,
            content_type=f.content_type,
            file_size=len(f.data),
            width=f.width,
            height=f.height,
            duration=f.duration_seconds,
        )
        assets.append((asset, bytes(f.data)))
    for i in order.inputs:
        token = new_asset_token()
        name = f"{i.role}-{gen.id}.{'jpg' if i.format == 'jpeg' else i.format}"
        asset = Asset(
            generation_id=gen.id,
            role=i.role,
            token=token,
            blob_key=f"{token}/{name}",
            file_name=name,
            content_type=INPUT_CONTENT_TYPES.get(i.format, "application/octet-stream"),
            file_size=len(i.data),
            width=i.width,
            height=i.height,
        )
        assets.append((asset, i.data))
    return assets


STORAGE_MESSAGE = "The output could not be stored; its points were refunded."


async def _store(
    state: BridgeState, outcome: GenerationOutcome, stored: list[tuple[Asset, bytes]]
) -> None:
    """Saves the output; whatever arrives meanwhile, the save runs to its end first.

    A cancel (client gone, ``POST .../cancel``, a cancel through the bus, a shutdown)
    that lands during the save waits for it, then the save's own outcome stands:
    completed with its files (the cancel came too late), or failed and refunded
    with no file left behind. Never the completed row without its files.
    """
    save = asyncio.ensure_future(_save(state, outcome, stored))
    cancelled = False
    while not save.done():
        try:
            await asyncio.shield(save)
        except asyncio.CancelledError:
            if save.cancelled():
                raise
            cancelled = True  # wait for the save, then decide
        except BaseException:
            break
    if cancelled:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        log.info("generation %s: a cancel arrived during the save", outcome.generation.id)
    save.result()  # the save's own error (refunded, files removed), if any


async def _save(
    state: BridgeState, outcome: GenerationOutcome, stored: list[tuple[Asset, bytes]]
) -> None:
    """Files first, then one transaction: assets, answer, completed; undone if it cannot.

    Both in one worker-thread call: one hand-off from the event loop a request, not two.
    """
    gen, assets = outcome.generation, outcome.assets

    def write_and_complete(session: Session) -> bool:
        for asset, data in stored:
            state.blobs.put(asset.blob_key, data)
        return generations.complete(
            session, gen.id, assets, outcome.generation_time_ms, outcome.data or None
        )

    def remove_all() -> None:
        """Best effort: a store that is away keeps what it has (never a second error)."""
        for asset in assets:
            try:
                state.blobs.delete(asset.blob_key)
            except StoreUnavailable as exc:
                log.warning("generation %s: a file stays behind: %s", gen.id, exc)

    try:
        completed = await state.db(write_and_complete)
    except StoreUnavailable as exc:
        log.warning("generation %s: the output could not be stored: %s", gen.id, exc)
        await run_in_threadpool(remove_all)
        await _end(state, gen.id, "failed", "storage_error", STORAGE_MESSAGE)
        raise ApiError(
            503,
            "storage_error",
            STORAGE_MESSAGE,
            headers={"Retry-After": str(state.settings.retry_after_s)},
        ) from exc
    except Exception:
        await run_in_threadpool(remove_all)
        await _end(state, gen.id, "failed", "storage_error", STORAGE_MESSAGE)
        raise
    if not completed:  # ended meanwhile (cancelled elsewhere, or its lease taken over)
        await run_in_threadpool(remove_all)
        raise ApiError(409, "generation_cancelled", CANCELLED_MESSAGE)
    gen.status = "completed"
