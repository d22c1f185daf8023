"""POST /api/v1/3d: one image in, a GLB and its rendered preview out.

The body may carry a 20 MB image as base64, so this route bounds the body
before FastAPI reads it; the kind itself is declared in ``generation/three_d.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette.types import Message

from rest_bridge.answers import generation_responses
from rest_bridge.auth import CurrentCaller, StateDep, authenticate
from rest_bridge.generation.respond import respond
from rest_bridge.generation.three_d import THREE_D, MeshRequest
from rest_bridge.safe_fetch import payload_too_large
from rest_bridge.state import BridgeState, get_state

JSON_ALLOWANCE = 64 * 1024
"""Room in a request body for the JSON around the image: the other fields and
a data URL prefix are a few hundred bytes, so this is generous."""


def body_limit(max_image_bytes: int) -> int:
    """The largest request body that can still carry an image of ``max_image_bytes``.

    Base64 takes 4 characters per 3 bytes; an eighth more covers what JSON
    encoders add inside the string (escaped ``\\/``, escaped line breaks of
    MIME-wrapped base64), and ``JSON_ALLOWANCE`` the rest of the object. The
    exact limit is applied to the decoded bytes later; this bound only has to
    stop an oversized body before it is read into memory and parsed.
    """
    encoded = 4 * -(-max_image_bytes // 3)
    return encoded + encoded // 8 + JSON_ALLOWANCE


class BoundedBodyRoute(APIRoute):
    """A route that refuses an oversized body with 413 before FastAPI reads it.

    FastAPI reads and parses the whole JSON body before it resolves any
    dependency (those in ``dependencies=[...]`` included), so a size check
    cannot be a dependency. The declared ``Content-Length`` is checked
    without reading anything; a chunked body is read only up to the limit.
    The key is still checked first, so that a caller without a valid key
    gets 401, as on every other path.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            state = get_state(request)
            limit = body_limit(state.settings.max_upload_bytes)
            declared = request.headers.get("content-length", "")
            if declared.strip().isdigit() and int(declared) > limit:
                await _refuse_too_large(request, state)
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    await _refuse_too_large(request, state)
            return await handler(Request(request.scope, _replay(bytes(body), request)))

        return bounded


async def _refuse_too_large(request: Request, state: BridgeState) -> None:
    await authenticate(request, state)
    raise payload_too_large("image_base64", state.settings.max_upload_bytes)


def _replay(body: bytes, request: Request) -> Callable[[], Coroutine[Any, Any, Message]]:
    """An ASGI ``receive`` that hands back the body already read, then the real channel.

    Later calls reach the server's own ``receive``, so a client that goes
    away is still noticed while the generation runs.
    """
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await request.receive()

    return receive


router = APIRouter(prefix="/api/v1", tags=["3d"], route_class=BoundedBodyRoute)


@router.post("/3d", response_model=None, responses=generation_responses(THREE_D.answer_model))
async def create_mesh(
    body: MeshRequest, request: Request, caller: CurrentCaller, state: StateDep
) -> Response:
    return await respond(request, state, caller, THREE_D, body)
