"""POST /api/v1/images."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from rest_bridge.callers.keys import CurrentCaller, StateDep
from rest_bridge.edge.answers import generation_responses
from rest_bridge.generation.image import IMAGE, ImageRequest
from rest_bridge.generation.respond import respond

router = APIRouter(prefix="/api/v1", tags=["images"])


@router.post("/images", response_model=None, responses=generation_responses(IMAGE.answer_model))
async def create_images(
    body: ImageRequest, request: Request, caller: CurrentCaller, state: StateDep
) -> Response:
    return await respond(request, state, caller, IMAGE, body)
