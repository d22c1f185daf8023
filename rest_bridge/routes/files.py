"""Output files at capability URLs: ``/files/<128-bit token>/<name>``, no key needed.

The bridge serves them itself whatever the store: a local file as a ``FileResponse``,
an object in an S3-compatible bucket streamed from the bucket (read on worker threads).
"""

from __future__ import annotations

import re

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from rest_bridge.answers import error_responses
from rest_bridge.auth import StateDep
from rest_bridge.errors import ApiError
from storage.blobs import MEDIA_TYPES, media_type

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
async def get_file(token: str, name: str, state: StateDep) -> Response:
    """A token or name the bridge cannot have written is a 404 without a look at the store."""
    if not _TOKEN.fullmatch(token) or not _NAME.fullmatch(name):
        raise ApiError(404, "not_found", "No such file.")
    key = f"{token}/{name}"
    path = state.blobs.path(key)
    if path is not None:
        return FileResponse(path, media_type=media_type(name), headers=CACHE_HEADERS)
    blob = await run_in_threadpool(state.blobs.open, key)
    if blob is None:
        raise ApiError(404, "not_found", "No such file.")
    # A sync iterator: Starlette reads each chunk on a worker thread.
    return StreamingResponse(
        iter(blob),
        media_type=media_type(name),
        headers={**CACHE_HEADERS, "Content-Length": str(blob.size)},
        background=BackgroundTask(blob.close),
    )
