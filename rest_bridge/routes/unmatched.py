"""Requests under ``/api/`` that no route serves: still counted when they carry a key.

Registered after every other router. A request with an Authorization header is
authenticated first (so its key's hourly counter moves and the rate-limit
headers reach the client), then answered 404, or 405 when another method exists.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.routing import BaseRoute, Match

from rest_bridge.callers.keys import StateDep, authenticate
from rest_bridge.edge.errors import ApiError

router = APIRouter(include_in_schema=False)

PATH = "/api/{rest:path}"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _serves(route: BaseRoute) -> bool:
    """Every route but this module's catch-all (FastAPI may wrap included routers)."""
    return getattr(route, "original_router", None) is not router and (
        getattr(route, "path", None) != PATH
    )


@router.api_route(PATH, methods=METHODS)
async def unmatched(rest: str, request: Request, state: StateDep) -> None:
    if "authorization" in request.headers:
        await authenticate(request, state)
    others = [r for r in request.app.router.routes if _serves(r)]
    allowed = [
        method
        for method in METHODS
        if any(r.matches({**request.scope, "method": method})[0] == Match.FULL for r in others)
    ]
    if allowed:
        methods = ", ".join(allowed)
        raise ApiError(
            405,
            "method_not_allowed",
            f"This path does not accept {request.method}; it accepts {methods}.",
            headers={"Allow": methods},
        )
    raise ApiError(404, "not_found", "Not found.")
