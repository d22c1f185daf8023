"""``POST /api/v1/images``, ``/videos`` and ``/3d``: one route per row of the kinds table.

Each route hands its body to its kind's unit (``generation/``), where the kind is
declared once; ``respond`` runs it in the mode the request asks for. A 3D body may
carry a 20 MB image as base64: ``edge/body_limit.py`` bounds every route's body
before anything reads it.
"""

from typing import Any

from fastapi import APIRouter, Request, Response

from rest_bridge.callers.keys import CurrentCaller, StateDep
from rest_bridge.edge.answers import generation_responses
from rest_bridge.generation.base import GenerationKind
from rest_bridge.generation.kinds import KINDS
from rest_bridge.generation.respond import respond

router = APIRouter()


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
