"""``POST /api/v1/images``, ``/videos`` and ``/3d``: one route per row of the kinds table.

Each route hands its body to its kind's unit (``generation/``), where the kind is
declared once; ``respond`` runs it in the mode the request asks for. A 3D body may
carry a 20 MB image as base64: ``edge/body_limit.py`` authenticates the caller and
bounds the body before anything reads it, and a large body is parsed and validated
off the event loop (``OffLoopJson``).
"""

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from rest_bridge.callers.keys import CurrentCaller, StateDep
from rest_bridge.edge.answers import generation_responses
from rest_bridge.generation.base import GenerationKind
from rest_bridge.generation.kinds import KINDS
from rest_bridge.generation.respond import respond

OFF_LOOP_BYTES = 256 * 1024
"""Bodies larger than this are parsed in a worker thread: other requests go on meanwhile."""


def _parse_and_validate(field: Any, body: bytes) -> tuple[Any, Any, list[Any]]:
    """The body parsed and checked against the route's model as FastAPI would: the parsed
    JSON, the validated model (None when refused) and the errors."""
    parsed = json.loads(body)
    value, errors = field.validate(parsed, {}, loc=("body",))
    return parsed, value, list(errors or [])


class OffLoopJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            if len(body) > OFF_LOOP_BYTES:
                self._json = await run_in_threadpool(json.loads, body)
            else:
                self._json = json.loads(body)
        return self._json


class OffLoopJson(APIRoute):
    """A route whose large JSON bodies are parsed and validated off the event loop.

    Over ``OFF_LOOP_BYTES``, the body is checked against the route's model in a worker
    thread (a 27 MB base64 image is checked by a pattern); FastAPI is then handed the
    validated model, which pydantic takes as it is (instances are not validated again),
    or the same 422 it would have raised. The declared body stays the route's: OpenAPI
    describes it as before. The caller is known before (``BodyLimit`` authenticates the
    generation routes first), so an anonymous body is never read, let alone checked.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        field = self.body_field

        async def route(request: Request) -> Response:
            wrapped = OffLoopJsonRequest(request.scope, request.receive)
            if field is not None:
                body = await wrapped.body()
                if len(body) > OFF_LOOP_BYTES:
                    try:
                        parsed, value, errors = await run_in_threadpool(
                            _parse_and_validate, field, body
                        )
                    except ValueError:  # not JSON (nor UTF-8): FastAPI answers it as ever
                        return await handler(wrapped)
                    if errors:
                        raise RequestValidationError(errors, body=parsed)
                    wrapped._json = value
            return await handler(wrapped)

        return route


router = APIRouter(route_class=OffLoopJson)


def _endpoint(unit: GenerationKind[Any]) -> Any:
    async def create(
        body: Any, request: Request, caller: CurrentCaller, state: StateDep
    ) -> Response:
        return await respond(request, state, caller, unit, body)

    create.__annotations__["body"] = unit.body  # the unit's schema: validation and OpenAPI
    return create


for _unit in KINDS.values():
    router.add_api_route(
        _unit.path,
        _endpoint(_unit),
        methods=["POST"],
        name=_unit.operation,
        tags=[_unit.path.rsplit("/", 1)[-1]],
        response_model=None,
        responses=generation_responses(_unit.answer_model),
    )
