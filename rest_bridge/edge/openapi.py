"""``/openapi.json``: FastAPI's schema, plus what the routes' signatures cannot say.

- The bearer scheme (``HTTPBearer``), on every operation whose route
  authenticates a key (found from its dependencies, not from its path).
- The three ways a generation route answers: ``Prefer: respond-async`` (202 and
  status URLs), ``Accept: text/event-stream`` (progress as Server-Sent Events)
  and ``Idempotency-Key`` (a retry is never run or debited twice), as header
  parameters with the ``text/event-stream`` answer beside the JSON one.
- The published document's request and response examples (``doc_examples.py``)
  on each kind's generation route (``generation/kinds.py``) and on the projects route.
"""

from __future__ import annotations

from typing import Any

import fastapi.routing
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi

from rest_bridge.callers.keys import authenticate
from rest_bridge.edge import doc_examples
from rest_bridge.edge.answers import SSE_EVENT_SCHEMA
from rest_bridge.generation.kinds import KINDS

BEARER = "bearerAuth"
SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": (
        "An API key (`gsk_...`) from Settings → API Keys (`/settings/api-keys`) or "
        "`genserve keys create`, sent as `Authorization: Bearer <key>`."
    ),
}

MODE_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "Prefer",
        "in": "header",
        "required": False,
        # Any string: a server ignores preferences it does not know (RFC 7240).
        "schema": {"type": "string", "examples": ["respond-async"]},
        "description": (
            "`respond-async`: answer 202 at once with `status_url`, `events_url` and "
            "`cancel_url` (and `Location`); the points are taken before the 202, so a "
            "402 still comes first. Without it the answer is the finished generation."
        ),
    },
    {
        "name": "Accept",
        "in": "header",
        "required": False,
        # Any string: a type the bridge does not serve gets the JSON answer.
        "schema": {"type": "string", "examples": ["application/json", "text/event-stream"]},
        "description": (
            "`text/event-stream`: the answer is a stream of Server-Sent Events "
            "(`queued`, `progress`, then `completed` with the 200 `data`, or `failed` "
            "with the error envelope). Closing the stream cancels and refunds the work."
        ),
    },
    {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        # Printable Latin-1 (what a header carries, as Python's isprintable() reads it);
        # anything else is 400 invalid_request.
        "schema": {"type": "string", "pattern": "^[\\x20-\\x7e\\xa1-\\xac\\xae-\\xff]{1,255}$"},
        "description": (
            "Makes a retry safe in every mode: the same key with the same request gets "
            "the stored answer (`Idempotent-Replayed: true`) without a second run or "
            "debit; with another request 422; while the first still runs 409."
        ),
    },
]

SSE_EXAMPLE = (
    'id: 1\nevent: queued\ndata: {"position":0}\n\n'
    'id: 2\nevent: progress\ndata: {"stage":"denoising","step":4,"total":8,'
    '"elapsed":0.41,"estimated_remaining":0.4}\n\n'
    'id: 3\nevent: completed\ndata: {"images":[...],"generation_id":"...",'
    '"generation_time":950,"remaining_points":96,"request_id":"req_..."}\n\n'
)

MODES_TEXT = (
    "\n\nAnswers in one of three modes: JSON when done (default), "
    "`Prefer: respond-async` (202, then poll `status_url` or follow `events_url`), "
    "or `Accept: text/event-stream` (progress as Server-Sent Events). "
    "`Idempotency-Key` makes any of them safe to retry."
)


def needs_key(route: Any) -> bool:
    """Whether the route authenticates a key (``CurrentCaller``), however deep."""

    def walk(dependant: Dependant) -> bool:
        return dependant.call is authenticate or any(walk(d) for d in dependant.dependencies)

    dependant = getattr(route, "dependant", None)
    return isinstance(dependant, Dependant) and walk(dependant)


def api_routes(app: FastAPI) -> list[Any]:
    """The app's API routes with their full paths, included routers flattened.

    FastAPI from 0.160 keeps included routers as such (``iter_route_contexts``
    flattens them); before, ``app.routes`` held the routes themselves.
    """
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    routes = list(iterate(app.routes)) if iterate is not None else list(app.routes)
    return [r for r in routes if isinstance(getattr(r, "dependant", None), Dependant)]


def _json(response: dict[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = response.setdefault("content", {})
    media: dict[str, Any] = content.setdefault("application/json", {})
    return media


def _add_security(app: FastAPI, schema: dict[str, Any]) -> None:
    schema.setdefault("components", {}).setdefault("securitySchemes", {})[BEARER] = SECURITY_SCHEME
    for route in api_routes(app):
        if not getattr(route, "include_in_schema", False) or not needs_key(route):
            continue
        for method in route.methods or ():
            operation = schema["paths"].get(route.path_format, {}).get(method.lower())
            if operation is not None:
                operation["security"] = [{BEARER: []}]


def _add_generation_modes(schema: dict[str, Any]) -> None:
    for unit in KINDS.values():
        request, response = doc_examples.GENERATION_EXAMPLES[unit.kind]
        operation = schema["paths"].get(unit.path, {}).get("post")
        if operation is None:
            continue
        names = {p["name"].lower() for p in operation.get("parameters", [])}
        operation.setdefault("parameters", []).extend(
            p for p in MODE_PARAMETERS if p["name"].lower() not in names
        )
        operation["description"] = (operation.get("description") or "") + MODES_TEXT
        body = operation.get("requestBody")
        if body is not None:
            _json(body)["example"] = request
        ok = operation["responses"].setdefault("200", {"description": "Done."})
        _json(ok)["example"] = response
        ok["content"]["text/event-stream"] = {
            "schema": SSE_EVENT_SCHEMA,
            "example": SSE_EXAMPLE,
        }


def _add_projects_examples(schema: dict[str, Any]) -> None:
    operation = schema["paths"].get("/api/v1/projects", {}).get("get")
    if operation is None:
        return
    for parameter in operation.get("parameters", []):
        if parameter["name"] in doc_examples.PROJECTS_QUERY:
            parameter["example"] = doc_examples.PROJECTS_QUERY[parameter["name"]]
    _json(operation["responses"]["200"])["example"] = doc_examples.PROJECTS_RESPONSE


def build(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        _add_security(app, schema)
        _add_generation_modes(schema)
        _add_projects_examples(schema)
        app.openapi_schema = schema
    return app.openapi_schema


def install(app: FastAPI) -> None:
    """``app.openapi()`` (and so ``/openapi.json``, ``/docs``, ``/redoc``) serve ``build``."""

    def openapi() -> dict[str, Any]:
        return build(app)

    app.openapi = openapi  # type: ignore[method-assign]
