"""POST /api/v1/videos."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from genserve.inference.v1 import inference_pb2 as pb
from inference_server.model_config import ModelSpec
from rest_bridge.auth import CurrentCaller, StateDep
from rest_bridge.dispatch import respond
from rest_bridge.envelope import request_id
from rest_bridge.errors import ApiError, validation_error
from rest_bridge.generate import GenerationOrder, GenerationOutcome
from rest_bridge.pricing import video_price
from rest_bridge.schemas import VideoRequest
from rest_bridge.state import BridgeState

router = APIRouter(prefix="/api/v1", tags=["videos"])


def whole_if_whole(seconds: float) -> int | float:
    """The document shows ``"duration": 4``; a clip of exactly 4 s answers the same integer.

    Rounded to the millisecond first, so a container's time-base arithmetic
    (3.9999999) does not turn a 4 s clip into a float.
    """
    value = round(seconds, 3)
    return int(value) if value.is_integer() else value


def video_view(
    state: BridgeState,
    body: VideoRequest,
    spec: ModelSpec,
    outcome: GenerationOutcome,
) -> dict[str, Any]:
    """The document's ``video`` object, then the additions (poster, rate, frame count).

    Size and duration come from the stored file's metadata, which the inference
    server read back from the encoded MP4, so they describe the file itself.
    """
    primaries = outcome.primaries()
    if not primaries:
        raise ApiError(502, "inference_error", "The inference server sent no video.")
    primary = primaries[0]
    preview = outcome.preview(0)
    fps = spec.frame_rate
    return {
        "url": state.file_url(primary.token, primary.file_name),
        "content_type": primary.content_type,
        "file_name": primary.file_name,
        "file_size": primary.file_size,
        "width": primary.width,
        "height": primary.height,
        "duration": whole_if_whole(primary.duration),
        "resolution": body.resolution,
        "aspect_ratio": body.aspect_ratio,
        "model": body.model,
        "generation_id": outcome.generation.id,
        "thumbnail": state.file_url(preview.token, preview.file_name) if preview else None,
        "frame_rate": fps,
        "frame_count": round(primary.duration * fps),
    }


@router.post("/videos", response_model=None)
async def create_video(
    body: VideoRequest, request: Request, caller: CurrentCaller, state: StateDep
) -> Response:
    spec = state.models.get(body.model, "video")
    if spec is None:
        names = ", ".join(state.models.names("video"))
        raise validation_error("model", f"unknown video model; available: {names}")
    if not spec.min_duration <= body.duration <= spec.max_duration:
        raise validation_error(
            "duration",
            f"must be whole seconds from {spec.min_duration} to {spec.max_duration} "
            f"for {spec.name}",
        )
    rid = request_id(request)
    params: dict[str, Any] = {
        "duration": body.duration,
        "resolution": body.resolution,
        "aspect_ratio": body.aspect_ratio,
    }
    if body.webhook_url:
        params["webhook_url"] = body.webhook_url
    order = GenerationOrder(
        kind="video",
        model=body.model,
        prompt=body.prompt,
        params=params,
        cost=video_price(state.settings, body.duration, body.resolution),
        rpc="GenerateVideo",
        request=pb.GenerateVideoRequest(
            model=body.model,
            prompt=body.prompt,
            aspect_ratio=body.aspect_ratio,
            resolution=body.resolution,
            duration_seconds=body.duration,
            request_id=rid,
        ),
        timeout_s=state.settings.video_timeout_s,
    )

    def build(outcome: GenerationOutcome) -> dict[str, Any]:
        return {
            "video": video_view(state, body, spec, outcome),
            "generation_time": outcome.generation_time_ms,
            "remaining_points": outcome.remaining_points,
            "request_id": rid,
        }

    return await respond(request, state, caller, order, build)
