"""POST /api/v1/images."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from genserve.inference.v1 import inference_pb2 as pb
from rest_bridge.auth import CurrentCaller, StateDep
from rest_bridge.dispatch import respond
from rest_bridge.envelope import request_id
from rest_bridge.errors import validation_error
from rest_bridge.generate import GenerationOrder, GenerationOutcome
from rest_bridge.pricing import image_price
from rest_bridge.schemas import ImageRequest
from rest_bridge.views import file_view

router = APIRouter(prefix="/api/v1", tags=["images"])

FORMATS = {"png": pb.IMAGE_FORMAT_PNG, "jpeg": pb.IMAGE_FORMAT_JPEG, "webp": pb.IMAGE_FORMAT_WEBP}


@router.post("/images", response_model=None)
async def create_images(
    body: ImageRequest, request: Request, caller: CurrentCaller, state: StateDep
) -> Response:
    if state.models.get(body.model, "image") is None:
        names = ", ".join(state.models.names("image"))
        raise validation_error("model", f"unknown image model; available: {names}")
    rid = request_id(request)
    params: dict[str, Any] = {
        "aspect_ratio": body.aspect_ratio,
        "output_format": body.output_format,
        "num_images": body.num_images,
    }
    if body.webhook_url:
        params["webhook_url"] = body.webhook_url
    order = GenerationOrder(
        kind="image",
        model=body.model,
        prompt=body.prompt,
        params=params,
        cost=image_price(state.settings, body.num_images),
        rpc="GenerateImage",
        request=pb.GenerateImageRequest(
            model=body.model,
            prompt=body.prompt,
            aspect_ratio=body.aspect_ratio,
            num_images=body.num_images,
            format=FORMATS[body.output_format],  # type: ignore[arg-type]
            request_id=rid,
        ),
        timeout_s=state.settings.image_timeout_s,
    )

    def build(outcome: GenerationOutcome) -> dict[str, Any]:
        images = [
            {**file_view(state, a), "aspect_ratio": body.aspect_ratio} for a in outcome.primaries()
        ]
        return {
            "images": images,
            "generation_id": outcome.generation.id,
            "generation_time": outcome.generation_time_ms,
            "remaining_points": outcome.remaining_points,
            "request_id": rid,
        }

    return await respond(request, state, caller, order, build)
