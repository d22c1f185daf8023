"""OpenAI-compatible routes: ``POST /v1/images/generations`` and ``GET /v1/models``.

A client of OpenAI's image API (the ``openai`` package with ``base_url`` set to
``{GENSERVE_PUBLIC_BASE_URL}/v1``) works with a genserve key unchanged. The same
keys, hourly limits and points as the native API apply: the request becomes an
``ImageRequest`` and runs through ``respond``, the one generation path, so it is
debited, recorded as a project, refunded on failure and made safe to retry with
``Idempotency-Key`` exactly as ``POST /api/v1/images`` would be.

Answers and errors take OpenAI's shapes, on these routes only:
``{"created": ..., "data": [{"url": ...} | {"b64_json": ...}]}`` and
``{"error": {"message", "type", "param", "code"}}``. ``code`` is genserve's code
(``invalid_api_key``, ``insufficient_points``, ``rate_limited``, ...); the status
is the native one, except that a field the native API answers 422 is a 400, as
OpenAI answers it. Points running out is a 402 (type ``insufficient_quota``): the
``openai`` package raises ``APIStatusError`` with ``status_code == 402`` and does
not retry it (it retries 429 and 5xx, honouring ``Retry-After``).

``size`` ``WxH`` gives exactly that size when the model allows it (multiples of its
size factor, within its pixel limit); otherwise OpenAI's sizes map to an aspect
ratio (the model's own resolution follows from it);
``model`` takes genserve's public names, and OpenAI's names (``dall-e-*``,
``gpt-image-*``, ``chatgpt-image-*``) mean the default image model; ``quality``,
``style``, ``user`` and the other OpenAI tuning fields are accepted and ignored.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import (
    BaseModel,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from genserve import vocabulary as vocab
from rest_bridge.callers.keys import CurrentCaller, StateDep, authenticate
from rest_bridge.edge.envelope import request_id
from rest_bridge.edge.errors import ApiError
from rest_bridge.generation.base import StrictBody, WholeNumber
from rest_bridge.generation.image import IMAGE, ImageRequest
from rest_bridge.generation.order import find_model
from rest_bridge.generation.respond import respond
from rest_bridge.link.catalogue import ModelEntry
from rest_bridge.state import BridgeState
from storage import generations
from storage.blobs import StoreUnavailable

log = logging.getLogger(__name__)

SIZES: dict[str, vocab.ImageAspectRatio] = {
    "256x256": "1:1",
    "512x512": "1:1",
    "1024x1024": "1:1",
    "1792x1024": "16:9",
    "1024x1792": "9:16",
    "1536x1024": "3:2",
    "1024x1536": "2:3",
    "auto": "1:1",
}
"""OpenAI's sizes and the aspect ratio each asks for; any other size is refused (400)."""

OPENAI_IMAGE_MODEL_PREFIXES = ("dall-e-", "gpt-image-", "chatgpt-image-")
"""OpenAI's image model names (``dall-e-3``, ``gpt-image-1``...): each means the default model."""

FIELD_NAMES = {"num_images": "n", "aspect_ratio": "size"}
"""Native field names in errors, as the OpenAI request calls them."""

STARTED = int(time.time())
"""``created`` of every model in ``GET /v1/models``: when this bridge process started."""


class OpenAIError(Exception):
    """An error answered as ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or error_type(status)
        self.param = param
        self.code = code
        self.headers = headers or {}


def error_type(status: int) -> str:
    """OpenAI's ``type`` for a status."""
    if status == 402:
        return "insufficient_quota"
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def from_api_error(err: ApiError) -> OpenAIError:
    """A native error in OpenAI's shape: same code and headers; a 422 becomes a 400."""
    param = None
    if err.details:
        field = err.details[0].get("field", "")
        param = FIELD_NAMES.get(field, field) or None
    status = 400 if err.status == 422 else err.status
    return OpenAIError(status, err.message, param=param, code=err.code, headers=err.headers)


def _loc_name(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


async def from_validation_error(request: Request, exc: RequestValidationError) -> OpenAIError:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        if "caller" not in request.scope.get("state", {}):
            # The body is parsed before the key is checked; an unknown caller learns nothing.
            await authenticate(request, request.app.state.bridge)
        return OpenAIError(
            400,
            "We could not parse the JSON body of your request.",
            code="invalid_request",
        )
    first = errors[0] if errors else {}
    param = _loc_name(tuple(first.get("loc", ())))
    param = FIELD_NAMES.get(param, param) if param else None
    message = str(first.get("msg", "Invalid request."))
    if first.get("type") == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"
    elif first.get("type") == "missing":
        message = f"Missing required parameter: '{param}'."
    elif param:
        message = f"Invalid '{param}': {message}"
    return OpenAIError(400, message, param=param, code="invalid_request")


def openai_body(err: OpenAIError) -> dict[str, Any]:
    return {
        "error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}
    }


async def error_response(request: Request, exc: Exception) -> JSONResponse:
    """Every failure on these routes, in OpenAI's error format."""
    if isinstance(exc, OpenAIError):
        err = exc
    elif isinstance(exc, ApiError):
        err = from_api_error(exc)
    elif isinstance(exc, RequestValidationError):
        try:
            err = await from_validation_error(request, exc)
        except ApiError as auth_err:
            err = from_api_error(auth_err)
    elif isinstance(exc, StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        err = OpenAIError(exc.status_code, message, headers=dict(exc.headers or {}))
    else:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        err = OpenAIError(
            500, "An unexpected error occurred; it has been logged.", code="internal_error"
        )
    headers = {"X-Request-ID": request_id(request), **err.headers}
    headers.update(request.scope.get("state", {}).get("extra_headers", {}))
    return JSONResponse(openai_body(err), status_code=err.status, headers=headers)


class OpenAIRoute(APIRoute):
    """A route whose errors (auth, limits, validation, generation) answer in OpenAI's format."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                return await error_response(request, exc)

        return answer


router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)


class OpenAIErrorObject(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorAnswer(BaseModel):
    error: OpenAIErrorObject


OPENAI_ERRORS: dict[int | str, Any] = {
    status: {"model": OpenAIErrorAnswer, "description": text}
    for status, text in {
        400: "A field is invalid or unknown (`invalid_request_error`, with `param`).",
        401: "Missing, unknown or revoked key (`invalid_api_key`).",
        402: "Not enough points (`insufficient_quota`, code `insufficient_points`).",
        429: "Hourly limit of the key (`rate_limited`, with `Retry-After`).",
        503: "No inference server, or busy (`server_error`, with `Retry-After`).",
    }.items()
}


OpenAIText = Annotated[StrictStr, Field(min_length=1, max_length=256)]
"""A free-text field OpenAI takes and this bridge ignores (``user``, ``safety_identifier``)."""


class OpenAIImageRequest(StrictBody):
    """OpenAI's ``images.generate`` parameters, checked as strictly as the native ones.

    Strict types (``n`` is a number, ``stream`` a boolean), strings that are text
    (``StrictBody``), bounded, and OpenAI's documented values where it documents them;
    what no counterpart here tunes is then ignored. Refused with a 400 before any debit.
    """

    prompt: StrictStr = Field(min_length=1, max_length=vocab.MAX_PROMPT_CHARS)
    model: StrictStr | None = Field(None, min_length=1, max_length=200)
    n: WholeNumber | None = Field(1, ge=vocab.MIN_IMAGES, le=vocab.MAX_IMAGES)
    size: StrictStr | None = Field(
        None,
        max_length=16,
        description="WxH: exactly that size where the model allows it (a multiple of its "
        "size_factor, within max_pixels); else one of " + ", ".join(SIZES) + ".",
    )
    response_format: Literal["url", "b64_json"] | None = None
    output_format: vocab.OutputFormat | None = None
    stream: StrictBool | None = None
    # Accepted and ignored: what they tune has no counterpart here.
    quality: Literal["auto", "high", "medium", "low", "hd", "standard"] | None = None
    style: Literal["vivid", "natural"] | None = None
    user: OpenAIText | None = None
    background: Literal["auto", "transparent", "opaque"] | None = None
    moderation: Literal["auto", "low"] | None = None
    output_compression: StrictInt | None = Field(None, ge=0, le=100)
    safety_identifier: OpenAIText | None = None

    _prompt = field_validator("prompt")(vocab.clean_prompt)


class OpenAIImage(BaseModel):
    url: str | None = None
    b64_json: str | None = None


class OpenAIImagesAnswer(BaseModel):
    created: int
    data: list[OpenAIImage]


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    kind: str


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


def aspect_ratio_for(size: str | None) -> vocab.ImageAspectRatio:
    if size is None:
        return vocab.DEFAULT_IMAGE_ASPECT_RATIO
    ratio = SIZES.get(size)
    if ratio is None:
        raise OpenAIError(
            400,
            f"Invalid 'size': {size!r} is not supported; use one of {', '.join(SIZES)}.",
            param="size",
            code="invalid_size",
        )
    return ratio


def exact_size(size: str | None, model: ModelEntry) -> tuple[int, int] | None:
    """``size`` as (width, height) when it is ``WxH`` and the model makes exactly that size."""
    if not size or size == "auto":
        return None
    w, sep, h = size.partition("x")
    if not sep or not w.isdigit() or not h.isdigit():
        return None
    width, height = int(w), int(h)
    factor = model.size_factor or 1
    if width < 1 or height < 1 or width % factor or height % factor:
        return None
    if model.max_pixels and width * height > model.max_pixels:
        return None
    return width, height


def _plain(request: Request) -> Request:
    """The request without ``Prefer: respond-async`` or ``Accept: text/event-stream``.

    OpenAI's answer is always the finished images; the native modes stay native.
    The scope's state (request id, caller, rate-limit headers) is the same object.
    """
    headers = [
        (name, value)
        for name, value in request.scope["headers"]
        if name != b"prefer" and not (name == b"accept" and b"text/event-stream" in value)
    ]
    return Request({**request.scope, "headers": headers}, request.receive)


async def _file_contents(state: BridgeState, generation_id: str) -> list[bytes]:
    def read(key: str) -> bytes:
        try:
            blob = state.blobs.open(key)
        except StoreUnavailable as exc:
            log.warning("file store unavailable: %s", exc)
            blob = None
        if blob is None:
            raise ApiError(
                503,
                "storage_error",
                "A stored output could not be read; try again later.",
                headers={"Retry-After": str(state.settings.retry_after_s)},
            )
        with blob:
            return blob.read()

    keys = await state.db(generations.primary_blob_keys, generation_id)
    return [await run_in_threadpool(read, key) for key in keys]


@router.post(
    "/images/generations",
    response_model=OpenAIImagesAnswer,
    response_model_exclude_none=True,
    responses=OPENAI_ERRORS,
    summary="Create images (OpenAI-compatible)",
)
async def create_image(
    body: OpenAIImageRequest, request: Request, caller: CurrentCaller, state: StateDep
) -> Any:
    """``images.generate`` of OpenAI's client; the same points and limits as ``/api/v1/images``."""
    if body.stream:
        raise OpenAIError(400, "Streaming is not supported here.", param="stream")
    wanted = body.model
    if wanted is None or wanted.startswith(OPENAI_IMAGE_MODEL_PREFIXES):
        wanted = None
    model = await find_model(state, IMAGE, wanted)
    exact = exact_size(body.size, model)
    size: dict[str, Any] = (
        {"width": exact[0], "height": exact[1]}
        if exact
        else {"aspect_ratio": aspect_ratio_for(body.size)}
    )
    try:
        native = ImageRequest(
            prompt=body.prompt,
            output_format=body.output_format or vocab.DEFAULT_OUTPUT_FORMAT,
            num_images=body.n or 1,
            model=model.name,
            **size,
        )
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    answer = await respond(_plain(request), state, caller, IMAGE, native)
    if answer.status_code != 200 or not isinstance(answer, JSONResponse):
        return answer  # 499: the client went away, and the work was cancelled and refunded
    result = json.loads(bytes(answer.body))["data"]
    if body.response_format == "b64_json":
        contents = await _file_contents(state, result["generation_id"])
        data = [{"b64_json": base64.b64encode(c).decode()} for c in contents]
    else:
        data = [{"url": image["url"]} for image in result["images"]]
    return {"created": int(time.time()), "data": data}


async def _edit(
    request: Request,
    state: BridgeState,
    caller: Any,
    *,
    image: UploadFile,
    mask: UploadFile | None,
    prompt: str,
    n: int,
    size: str | None,
    response_format: str | None,
    model_name: str | None,
) -> dict[str, Any]:
    """An input image (and mask) to images: image to image or inpainting, by the mask."""
    wanted = model_name
    if wanted is None or wanted.startswith(OPENAI_IMAGE_MODEL_PREFIXES):
        wanted = None
    model = await find_model(state, IMAGE, wanted)
    limit = state.settings.max_upload_bytes
    image_data = await image.read(limit + 1)
    mask_data = await mask.read(limit + 1) if mask is not None else b""
    if len(image_data) > limit or len(mask_data) > limit:
        raise OpenAIError(413, "The image is too large.", param="image", code="payload_too_large")
    exact = exact_size(size, model)
    fields: dict[str, Any] = (
        {"width": exact[0], "height": exact[1]}
        if exact
        else {"aspect_ratio": aspect_ratio_for(size)}
    )
    fields["image_base64"] = base64.b64encode(image_data).decode()
    if mask is not None:
        fields["mask_base64"] = base64.b64encode(mask_data).decode()
    try:
        native = ImageRequest(prompt=prompt, num_images=n, model=model.name, **fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    answer = await respond(_plain(request), state, caller, IMAGE, native)
    if answer.status_code != 200 or not isinstance(answer, JSONResponse):
        return answer  # type: ignore[return-value]
    result = json.loads(bytes(answer.body))["data"]
    if response_format == "b64_json":
        contents = await _file_contents(state, result["generation_id"])
        data = [{"b64_json": base64.b64encode(c).decode()} for c in contents]
    else:
        data = [{"url": i["url"]} for i in result["images"]]
    return {"created": int(time.time()), "data": data}


@router.post(
    "/images/edits",
    response_model=OpenAIImagesAnswer,
    response_model_exclude_none=True,
    responses=OPENAI_ERRORS,
    summary="Edit an image (OpenAI-compatible)",
)
async def edit_image(
    request: Request,
    caller: CurrentCaller,
    state: StateDep,
    image: Annotated[UploadFile, File()],
    prompt: Annotated[str, Form()],
    mask: Annotated[UploadFile | None, File()] = None,
    n: Annotated[int, Form(ge=vocab.MIN_IMAGES, le=vocab.MAX_IMAGES)] = 1,
    size: Annotated[str | None, Form()] = None,
    response_format: Annotated[Literal["url", "b64_json"] | None, Form()] = None,
    model: Annotated[str | None, Form()] = None,
) -> Any:
    """``images.edit``: image to image, or inpainting with ``mask`` (white repainted)."""
    return await _edit(
        request,
        state,
        caller,
        image=image,
        mask=mask,
        prompt=prompt,
        n=n,
        size=size,
        response_format=response_format,
        model_name=model,
    )


@router.post(
    "/images/variations",
    response_model=OpenAIImagesAnswer,
    response_model_exclude_none=True,
    responses=OPENAI_ERRORS,
    summary="Image variations (OpenAI-compatible)",
)
async def image_variations(
    request: Request,
    caller: CurrentCaller,
    state: StateDep,
    image: Annotated[UploadFile, File()],
    n: Annotated[int, Form(ge=vocab.MIN_IMAGES, le=vocab.MAX_IMAGES)] = 1,
    size: Annotated[str | None, Form()] = None,
    response_format: Annotated[Literal["url", "b64_json"] | None, Form()] = None,
    model: Annotated[str | None, Form()] = None,
) -> Any:
    """``images.create_variation``: image to image from the input, with a neutral prompt."""
    return await _edit(
        request,
        state,
        caller,
        image=image,
        mask=None,
        prompt="a variation of this image",
        n=n,
        size=size,
        response_format=response_format,
        model_name=model,
    )


def _model_list(state: BridgeState) -> list[dict[str, Any]]:
    return [
        {
            "id": entry.name,
            "object": "model",
            "created": STARTED,
            "owned_by": "genserve",
            "kind": entry.kind,
        }
        for entry in state.client.catalogue.models()
    ]


@router.get("/models", response_model=OpenAIModelList, responses=OPENAI_ERRORS)
async def list_models(caller: CurrentCaller, state: StateDep) -> dict[str, Any]:
    """Every model the inference servers serve (``kind`` added); ``GET /api/v1/models`` has more."""
    return {"object": "list", "data": _model_list(state)}


@router.get(
    "/models/{model_id}",
    response_model=OpenAIModel,
    responses={
        **OPENAI_ERRORS,
        404: {"model": OpenAIErrorAnswer, "description": "No such model (`model_not_found`)."},
    },
)
async def get_model(model_id: str, caller: CurrentCaller, state: StateDep) -> dict[str, Any]:
    for model in _model_list(state):
        if model["id"] == model_id:
            return model
    raise OpenAIError(
        404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found"
    )


@router.api_route(
    "/{rest:path}",
    methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    include_in_schema=False,
)
async def unmatched(rest: str, request: Request, state: StateDep) -> None:
    """Other ``/v1/`` paths: counted when they carry a key, answered 404 as OpenAI does."""
    if "authorization" in request.headers:
        await authenticate(request, state)
    raise OpenAIError(404, f"Invalid URL ({request.method} {request.url.path})", code="not_found")
