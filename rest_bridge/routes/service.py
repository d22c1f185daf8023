"""Health and the model catalogue."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from rest_bridge.auth import CurrentCaller, StateDep
from rest_bridge.errors import ApiError
from rest_bridge.pricing import price_table

router = APIRouter(tags=["service"])


@router.get("/healthz")
async def healthz(state: StateDep) -> dict[str, Any]:
    if not await state.client.serving():
        raise ApiError(
            503,
            "inference_unavailable",
            "No inference server is serving yet.",
            headers={"Retry-After": str(state.settings.retry_after_s)},
        )
    return {"success": True, "data": {"status": "ok"}}


@router.get("/api/v1/models")
async def list_models(caller: CurrentCaller, state: StateDep) -> dict[str, Any]:
    prices = price_table(state.settings)
    models = []
    for spec in state.models.models:
        default = state.models.default(spec.kind)
        entry: dict[str, Any] = {
            "name": spec.name,
            "kind": "3d" if spec.kind == "mesh" else spec.kind,
            "default": default is not None and default.name == spec.name,
            "price": prices[spec.kind],
        }
        if spec.kind == "image":
            entry["aspect_ratios"] = list(
                ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9", "9:21", "5:4", "4:5")
            )
            entry["output_formats"] = ["png", "jpeg", "webp"]
            entry["num_images"] = {"min": 1, "max": 4}
        elif spec.kind == "video":
            entry["resolutions"] = ["360p", "520p", "720p", "1080p"]
            entry["aspect_ratios"] = ["16:9", "9:16", "1:1", "4:3", "3:4"]
            entry["duration"] = {"min": spec.min_duration, "max": spec.max_duration, "default": 4}
            entry["frame_rate"] = spec.frame_rate
        else:
            entry["texture_quality"] = ["no", "standard"]
            entry["texture_alignment"] = ["original_image", "geometry"]
            entry["orientation"] = ["default", "align_image"]
        models.append(entry)
    return {"success": True, "data": {"models": models}}
