"""Health and the model catalogue."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from rest_bridge.answers import HealthAnswer, ModelsAnswer, Ok, error_responses
from rest_bridge.auth import CurrentCaller, StateDep
from rest_bridge.envelope import ok
from rest_bridge.errors import ApiError
from rest_bridge.generation.kinds import KINDS

router = APIRouter(tags=["service"])


@router.get("/healthz", response_model=Ok[HealthAnswer], responses=error_responses({503: ""}))
async def healthz(state: StateDep) -> dict[str, Any]:
    """200 while some inference server is serving; the catalogue follows it."""
    await state.client.refresh()
    if not any(link.serving for link in state.client.links.values()):
        raise ApiError(
            503,
            "inference_unavailable",
            "No inference server is serving yet.",
            headers={"Retry-After": str(state.settings.retry_after_s)},
        )
    return ok({"status": "ok"})


@router.get("/api/v1/models", response_model=Ok[ModelsAnswer], responses=error_responses())
async def list_models(caller: CurrentCaller, state: StateDep) -> dict[str, Any]:
    """Every model the inference servers serve, as they listed it, with its price."""
    catalogue = state.client.catalogue
    models = []
    for entry in catalogue.models():
        unit = KINDS[entry.kind]
        default = catalogue.default(entry.kind)
        models.append(
            {
                "name": entry.name,
                "kind": entry.kind,
                "default": default is not None and default.name == entry.name,
                "price": unit.price_table(state.settings),
                **unit.describe(entry),
            }
        )
    return ok({"models": models})
