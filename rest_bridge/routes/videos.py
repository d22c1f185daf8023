"""POST /api/v1/videos."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from rest_bridge.callers.keys import CurrentCaller, StateDep
from rest_bridge.edge.answers import generation_responses
from rest_bridge.generation.respond import respond
from rest_bridge.generation.video import VIDEO, VideoRequest

router = APIRouter(prefix="/api/v1", tags=["videos"])


@router.post("/videos", response_model=None, responses=generation_responses(VIDEO.answer_model))
async def create_video(
    body: VideoRequest, request: Request, caller: CurrentCaller, state: StateDep
) -> Response:
    return await respond(request, state, caller, VIDEO, body)
