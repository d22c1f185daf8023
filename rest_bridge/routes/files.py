"""Output files at capability URLs: ``/files/<128-bit token>/<name>``, no key needed."""

from __future__ import annotations

import re

from fastapi import APIRouter
from fastapi.responses import FileResponse

from rest_bridge.auth import StateDep
from rest_bridge.errors import ApiError

router = APIRouter(tags=["files"])

_TOKEN = re.compile(r"^[0-9a-f]{32}$")
MEDIA_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "jpg": "image/jpeg",
    "webp": "image/webp",
    "mp4": "video/mp4",
    "glb": "model/gltf-binary",
}


@router.get("/files/{token}/{name}")
async def get_file(token: str, name: str, state: StateDep) -> FileResponse:
    path = state.blobs.path(f"{token}/{name}") if _TOKEN.match(token) else None
    if path is None:
        raise ApiError(404, "not_found", "No such file.")
    ext = name.rsplit(".", 1)[-1].lower()
    return FileResponse(
        path,
        media_type=MEDIA_TYPES.get(ext, "application/octet-stream"),
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )
