"""Output files at capability URLs: ``/files/<128-bit token>/<name>``, no key needed.

The bridge serves them itself whatever the store, with the same answers from both: a
whole local file as Starlette sends files; a byte range of one, or an object in an
S3-compatible bucket, streamed in chunks read on worker threads; ``HEAD`` answers
``GET``'s headers. A store that cannot be read is a 503
``storage_error``.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from rest_bridge.callers.keys import StateDep
from rest_bridge.edge.answers import error_responses
from rest_bridge.edge.errors import ApiError
from rest_bridge.state import BridgeState
from storage.blobs import (
    MEDIA_TYPES,
    RangeNotSatisfiable,
    StoreUnavailable,
    media_type,
    parse_range,
)

__all__ = ["MEDIA_TYPES", "router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["files"])

_TOKEN = re.compile(r"[0-9a-f]{32}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
"""Output file names as the bridge writes them (``generated-image-<id>-1.png``)."""
CACHE_HEADERS = {"Cache-Control": "public, max-age=31536000, immutable"}
_BINARY = {"schema": {"type": "string", "format": "binary"}}


class WholeFile(FileResponse):
    """A local file sent whole, ``HEAD`` included; the request's ``Range`` (one the bridge
    chose not to take: malformed, several ranges) is not looked at again."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"range"]
        await super().__call__({**scope, "headers": headers}, receive, send)


class FileBytes(Response):
    media_type = "application/octet-stream"  # the fallback; each file has its own type


_FILE_RESPONSES: dict[int | str, Any] = {
    200: {
        "description": "The file, with an immutable Cache-Control.",
        "content": {mt: _BINARY for mt in sorted(set(MEDIA_TYPES.values()))},
    },
    206: {"description": "The byte range asked for (`Content-Range`)."},
    # 422: FastAPI lists it for any parameter
    **error_responses([404, 405, 413, 416, 422, 503], non_json_route=True),
}


@router.get(
    "/files/{token}/{name}",
    response_model=None,
    response_class=FileBytes,
    responses=_FILE_RESPONSES,
)
async def get_file(
    token: str,
    name: str,
    state: StateDep,
    range_header: Annotated[str | None, Header(alias="Range", include_in_schema=False)] = None,
) -> Response:
    """A token or name the bridge cannot have written is a 404 without a look at the store.

    One byte range (``Range: bytes=...``) is answered 206 from either store, so a
    player seeks in a video before it has it all; several ranges, or a malformed
    one, get the whole file; a range past the end is a 416 (``Content-Range: bytes */size``).
    """
    return await _answer(state, token, name, range_header, with_body=True)


@router.head(
    "/files/{token}/{name}",
    response_model=None,
    response_class=FileBytes,
    responses=_FILE_RESPONSES,
)
async def head_file(
    token: str,
    name: str,
    state: StateDep,
    range_header: Annotated[str | None, Header(alias="Range", include_in_schema=False)] = None,
) -> Response:
    """``GET``'s status and headers (length, type, ranges, caching) without the body."""
    return await _answer(state, token, name, range_header, with_body=False)


async def _answer(
    state: BridgeState, token: str, name: str, range_header: str | None, *, with_body: bool
) -> Response:
    if not _TOKEN.fullmatch(token) or not _NAME.fullmatch(name):
        raise ApiError(404, "not_found", "No such file.")
    key = f"{token}/{name}"
    byte_range = parse_range(range_header)
    path = state.blobs.path(key) if byte_range is None else None
    if path is not None:  # a whole local file: sent as Starlette sends files
        return WholeFile(path, media_type=media_type(name), headers=CACHE_HEADERS)
    try:
        blob = await run_in_threadpool(state.blobs.open, key, byte_range)
    except RangeNotSatisfiable as exc:
        raise ApiError(
            416,
            "range_not_satisfiable",
            f"The file has {exc.size} bytes; the range asked for lies past its end.",
            headers={"Content-Range": f"bytes */{exc.size}", "Accept-Ranges": "bytes"},
        ) from exc
    except StoreUnavailable as exc:
        log.warning("file store unavailable: %s", exc)
        raise ApiError(
            503,
            "storage_error",
            "The file store is unavailable; try again later.",
            headers={"Retry-After": str(state.settings.retry_after_s)},
        ) from exc
    if blob is None:
        raise ApiError(404, "not_found", "No such file.")
    headers = {**CACHE_HEADERS, "Accept-Ranges": "bytes", "Content-Length": str(blob.size)}
    if blob.partial:
        headers["Content-Range"] = blob.content_range()
    status = 206 if blob.partial else 200
    if not with_body:
        await run_in_threadpool(blob.close)
        return Response(status_code=status, media_type=media_type(name), headers=headers)
    # A sync iterator: Starlette reads each chunk on a worker thread.
    return StreamingResponse(
        iter(blob),
        status_code=status,
        media_type=media_type(name),
        headers=headers,
        background=BackgroundTask(blob.close),
    )
