"""Liveness, readiness, metrics and the model catalogue.

``/healthz`` says the process serves (for a restart policy); ``/readyz`` says it
can do its work (for a load balancer): the database answers, Redis too when one
is configured, and at least one inference server is SERVING. ``/metrics`` is
Prometheus text, outside the OpenAPI, open on loopback and otherwise behind
``GENSERVE_METRICS_TOKEN``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlmodel import Session

from rest_bridge.callers.keys import CurrentCaller, StateDep
from rest_bridge.edge.answers import HealthAnswer, ModelsAnswer, Ok, ReadyAnswer, error_responses
from rest_bridge.edge.envelope import ok
from rest_bridge.edge.errors import ApiError
from rest_bridge.edge.metrics import METRICS
from rest_bridge.generation.kinds import KINDS
from rest_bridge.state import BridgeState

router = APIRouter(tags=["service"])
log = logging.getLogger(__name__)

CHECK_DEADLINE_S = 2.0
OK = "ok"


@router.get("/healthz", response_model=Ok[HealthAnswer])
async def healthz() -> dict[str, Any]:
    """Alive: 200 whenever the process answers, whatever its dependencies do."""
    return ok({"status": "ok"})


async def _checked(name: str, check: Awaitable[str]) -> tuple[str, str]:
    """``(name, "ok")``, or ``(name, why not)`` when the check fails or takes too long."""
    try:
        return name, await asyncio.wait_for(check, CHECK_DEADLINE_S + 1)
    except TimeoutError:
        return name, f"no answer within {CHECK_DEADLINE_S + 1:.0f} s"
    except Exception as exc:  # the reason goes to the log; the answer stays generic
        log.debug("readiness check %s failed: %r", name, exc)
        return name, "unreachable"


def _select_one(session: Session) -> None:
    session.exec(text("SELECT 1"))  # type: ignore[call-overload]


async def _database(state: BridgeState) -> str:
    await state.db(_select_one)
    return OK


async def _redis(state: BridgeState) -> str:
    return OK if await state.ratelimits.check() else "unreachable"


async def _inference(state: BridgeState) -> str:
    await state.client.refresh(CHECK_DEADLINE_S)  # the catalogue follows the servers
    links = state.client.links.values()
    serving = sum(1 for link in links if link.serving)
    return OK if serving else f"none of {len(links)} serving"


@router.get("/readyz", response_model=Ok[ReadyAnswer], responses=error_responses([503]))
async def readyz(state: StateDep) -> dict[str, Any]:
    """Ready: the database, Redis (when configured) and an inference server; 503 says which not."""
    checks = [_checked("database", _database(state)), _checked("inference", _inference(state))]
    if state.settings.redis_url:
        checks.append(_checked("redis", _redis(state)))
    results = dict(await asyncio.gather(*checks))
    failing = {name: why for name, why in results.items() if why != OK}
    if failing:
        raise ApiError(
            503,
            "not_ready",
            "Not ready: " + "; ".join(f"{name} {why}" for name, why in failing.items()) + ".",
            details=[{"field": name, "message": why} for name, why in failing.items()],
            headers={"Retry-After": str(state.settings.retry_after_s)},
        )
    if not state.settings.redis_url:
        results["redis"] = "not configured"
    return ok({"status": "ready", "checks": results})


@router.get("/metrics", include_in_schema=False)
async def metrics(
    state: StateDep, authorization: Annotated[str | None, Header()] = None
) -> Response:
    """Prometheus text exposition of this process's series (``rest_bridge.edge.metrics``).

    Open on a loopback address without ``GENSERVE_METRICS_TOKEN``; otherwise it asks
    for that token, and without one set it is refused.
    """
    settings = state.settings
    if not settings.metrics_open:
        token = settings.metrics_token_value
        if token is None:
            raise ApiError(
                403, "forbidden", "/metrics needs GENSERVE_METRICS_TOKEN on a public address."
            )
        offered = (authorization or "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(offered, token.encode()):
            raise ApiError(401, "invalid_api_key", "/metrics needs its bearer token.")
    return Response(generate_latest(METRICS.registry), media_type=CONTENT_TYPE_LATEST)


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
                "step_cache": entry.step_cache or None,
                **unit.describe(entry),
            }
        )
    return ok({"models": models})
