"""POST /api/v1/3d: one image in, a GLB and its rendered preview out.

The input image is validated completely here (one of ``image_url`` and
``image_base64``, at most 20 MB, PNG, JPEG or WebP, at most 50 megapixels;
URLs fetched under the address policy), so that nothing is debited or sent
to the inference server for a request that cannot succeed.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette.types import Message

from genserve.inference.v1 import inference_pb2 as pb
from inference_server.model_config import ModelSpec
from rest_bridge.auth import CurrentCaller, StateDep, authenticate
from rest_bridge.dispatch import fetch_policy, respond
from rest_bridge.envelope import request_id
from rest_bridge.errors import ApiError, validation_error
from rest_bridge.generate import GenerationOrder, GenerationOutcome
from rest_bridge.image_input import load_image_input
from rest_bridge.pricing import mesh_price
from rest_bridge.safe_fetch import payload_too_large
from rest_bridge.schemas import MeshRequest
from rest_bridge.state import BridgeState, get_state

MAX_PIXELS = 50_000_000

JSON_ALLOWANCE = 64 * 1024
"""Room in a request body for the JSON around the image: the other fields and
a data URL prefix are a few hundred bytes, so this is generous."""

TEXTURE_QUALITIES = {"no": pb.TEXTURE_QUALITY_NO, "standard": pb.TEXTURE_QUALITY_STANDARD}
TEXTURE_ALIGNMENTS = {
    "original_image": pb.TEXTURE_ALIGNMENT_ORIGINAL_IMAGE,
    "geometry": pb.TEXTURE_ALIGNMENT_GEOMETRY,
}
ORIENTATIONS = {"default": pb.ORIENTATION_DEFAULT, "align_image": pb.ORIENTATION_ALIGN_IMAGE}


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


def _mesh_model(state: BridgeState, name: str | None) -> ModelSpec:
    if name is not None:
        spec = state.models.get(name, "mesh")
        if spec is None:
            names = ", ".join(state.models.names("mesh")) or "none"
            raise validation_error("model", f"unknown 3D model; available: {names}")
        return spec
    default = state.models.default("mesh")
    if default is None:
        raise ApiError(
            503,
            "inference_unavailable",
            "This server has no 3D model configured.",
            headers={"Retry-After": str(state.settings.retry_after_s)},
        )
    return default


@router.post("/3d", response_model=None)
async def create_mesh(
    body: MeshRequest, request: Request, caller: CurrentCaller, state: StateDep
) -> Response:
    # The model is checked before the image: a request that names an unknown
    # model must not make the server fetch anything.
    spec = _mesh_model(state, body.model)
    image = await load_image_input(
        body.image_url,
        body.image_base64,
        policy=fetch_policy(state),
        max_bytes=state.settings.max_upload_bytes,
        max_pixels=MAX_PIXELS,
    )
    rid = request_id(request)
    params: dict[str, Any] = {
        "texture_quality": body.texture_quality,
        "texture_alignment": body.texture_alignment,
        "orientation": body.orientation,
    }
    if body.webhook_url:
        params["webhook_url"] = body.webhook_url
    order = GenerationOrder(
        kind="3d",
        model=spec.name,
        prompt="",
        params=params,
        cost=mesh_price(state.settings),
        rpc="GenerateMesh",
        request=pb.GenerateMeshRequest(
            model=spec.name,
            image=image.data,
            texture_quality=TEXTURE_QUALITIES[body.texture_quality],  # type: ignore[arg-type]
            texture_alignment=TEXTURE_ALIGNMENTS[body.texture_alignment],  # type: ignore[arg-type]
            orientation=ORIENTATIONS[body.orientation],  # type: ignore[arg-type]
            request_id=rid,
        ),
        timeout_s=state.settings.mesh_timeout_s,
    )

    def build(outcome: GenerationOutcome) -> dict[str, Any]:
        model = outcome.primaries()[0]
        preview = outcome.preview(0)
        return {
            "model": {
                "url": state.file_url(model.token, model.file_name),
                "preview_image": (
                    state.file_url(preview.token, preview.file_name) if preview else None
                ),
                "content_type": model.content_type,
                "file_name": model.file_name,
                "file_size": model.file_size,
                "texture_quality": body.texture_quality,
                "generation_id": outcome.generation.id,
            },
            "generation_time": outcome.generation_time_ms,
            "remaining_points": outcome.remaining_points,
            "request_id": rid,
        }

    return await respond(request, state, caller, order, build)
