"""POST /api/v1/3d: one image in, a GLB and its rendered preview out.

The body may carry a 20 MB image as base64; ``body_limit.BodyLimit`` bounds it
(``three_d_body_limit``) before anything reads it, as it bounds every route's.
The kind itself is declared in ``generation/three_d.py``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from rest_bridge.callers.keys import CurrentCaller, StateDep
from rest_bridge.edge.answers import generation_responses
from rest_bridge.generation.respond import respond
from rest_bridge.generation.three_d import THREE_D, MeshRequest

router = APIRouter(prefix="/api/v1", tags=["3d"])


@router.post("/3d", response_model=None, responses=generation_responses(THREE_D.answer_model))
async def create_mesh(
    body: MeshRequest, request: Request, caller: CurrentCaller, state: StateDep
) -> Response:
    return await respond(request, state, caller, THREE_D, body)
