"""Output files at capability URLs: ``/files/<128-bit token>/<name>``, no key needed.

The bridge serves them itself whatever the store: a local file as a ``FileResponse``,
an object in an S3-compatible bucket streamed from the bucket (read on worker threads),
byte ranges included.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import FileResponse, PlainTextResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from rest_bridge.callers.keys import StateDep
from rest_bridge.edge.answers import error_responses
from rest_bridge.edge.errors import ApiError
from storage.blobs import MEDIA_TYPES, RangeNotSatisfiable, media_type, parse_range

__all__ = ["MEDIA_TYPES", "router"]

router = APIRouter(tags=["files"])

_TOKEN = re.compile(r"[0-9a-f]{32}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
"""Output file names as the bridge writes them (``generated-image-<id>-1.png``)."""
CACHE_HEADERS = {"Cache-Control": "public, max-age=31536000, immutable"}
_BINARY = {"schema": {"type": "string", "format": "binary"}}


class FileBytes(Response):
    media_type = "application/octet-stream"  # the fallback; each file has its own type


@router.get(
    "/files/{token}/{name}",
    response_model=None,
    response_class=FileBytes,
    responses={
        200: {
            "description": "The file, with an immutable Cache-Control.",
            "content": {mt: _BINARY for mt in sorted(set(MEDIA_TYPES.values()))},
        },
        **error_responses(
            [404, 405, 413, 422], non_json_route=True
        ),  # 422: FastAPI lists it for any parameter
    },
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
    one, get the whole file.
    """
    if not _TOKEN.fullmatch(token) or not _NAME.fullmatch(name):
        raise ApiError(404, "not_found", "No such file.")
    key = f"{token}/{name}"
    path = state.blobs.path(key)
    if path is not None:
        return FileResponse(path, media_type=media_type(name), headers=CACHE_HEADERS)
    try:
        blob = await run_in_threadpool(state.blobs.open, key, parse_range(range_header))
    except RangeNotSatisfiable as exc:  # as Starlette answers for a local file
        return PlainTextResponse(
            "", status_code=416, headers={"Content-Range": f"bytes */{exc.size}"}
        )
    if blob is None:
        raise ApiError(404, "not_found", "No such file.")
    headers = {**CACHE_HEADERS, "Accept-Ranges": "bytes", "Content-Length": str(blob.size)}
    if blob.partial:
        headers["Content-Range"] = blob.content_range()
    # A sync iterator: Starlette reads each chunk on a worker thread.
    return StreamingResponse(
        iter(blob),
        status_code=206 if blob.partial else 200,
        media_type=media_type(name),
        headers=headers,
        background=BackgroundTask(blob.close),
    )
