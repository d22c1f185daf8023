"""GET /api/v1/projects: the caller's finished generations, paged and filtered (``q``: by
prompt text); DELETE /api/v1/projects/{id}: one of them and its files."""

from __future__ import annotations

import logging
import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from genserve.vocabulary import PROJECT_TYPES, ProjectType
from rest_bridge.callers.keys import CurrentCaller, StateDep
from rest_bridge.edge.answers import DeletedProject, Ok, ProjectsAnswer, error_responses
from rest_bridge.edge.envelope import ok
from rest_bridge.edge.errors import ApiError
from rest_bridge.edge.views import file_view, iso
from rest_bridge.generation.kinds import unit_of
from rest_bridge.routes.generations import GENERATION_ID
from rest_bridge.state import BridgeState
from storage import generations
from storage.models import Asset, Generation

INPUT_ROLES = {"input": "input_image", "mask": "mask_image"}
"""Assets of a caller's inputs, and the metadata field that gives each one's URL."""

router = APIRouter(prefix="/api/v1", tags=["projects"])
log = logging.getLogger(__name__)


def project_view(state: BridgeState, gen: Generation, assets: list[Asset]) -> dict[str, Any]:
    """One project in the document's shape, plus an ``outputs`` list of every file."""
    primaries = [a for a in assets if a.role == "primary"]
    previews = {a.index: a for a in assets if a.role == "preview"}
    first = primaries[0] if primaries else None
    thumb = previews.get(0) or first
    # A video's preview is its poster: a full-size frame of the clip, kept as an image.
    poster = previews.get(0) if gen.kind == "video" else None
    metadata: dict[str, Any] = {
        "aspect_ratio": gen.params.get("aspect_ratio"),
        "file_size": first.file_size if first else 0,
        "dimensions": f"{first.width}x{first.height}" if first and first.width else None,
    }
    unit = unit_of(gen.kind)
    if unit is not None:
        metadata.update(unit.metadata(gen))
    for a in assets:  # the caller's inputs, kept with the project so it can be made again
        if a.role in INPUT_ROLES:
            metadata[INPUT_ROLES[a.role]] = state.file_url(a.token, a.file_name)
    return {
        "id": gen.id,
        "type": gen.kind,
        "prompt": gen.prompt,
        "created_at": iso(gen.created_at),
        "url": state.file_url(first.token, first.file_name) if first else None,
        "thumbnail": state.file_url(thumb.token, thumb.file_name) if thumb else None,
        "poster": state.file_url(poster.token, poster.file_name) if poster else None,
        "metadata": metadata,
        "model": gen.model,
        "outputs": [file_view(state, a) for a in primaries],
        "parameters": {
            k: v
            for k, v in (gen.params or {}).items()
            if k != "webhook_url" and not k.startswith("input_")
        },
    }


@router.get("/projects", response_model=Ok[ProjectsAnswer], responses=error_responses())
async def list_projects(
    caller: CurrentCaller,
    state: StateDep,
    type: Annotated[ProjectType, Query()] = "all",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    sort: Annotated[Literal["createdAt", "created_at"], Query()] = "createdAt",
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
    q: Annotated[
        str | None,
        Query(max_length=200, description="Only projects whose prompt holds this text (any case)."),
    ] = None,
) -> dict[str, Any]:
    def page_of(session: Any) -> tuple[list[Generation], int, dict[str, list[Asset]]]:
        rows, total = generations.list_projects(
            session,
            account_id=caller.account_id,
            kind=PROJECT_TYPES.get(type),
            page=page,
            limit=limit,
            descending=order == "desc",
            text=q.strip() if q else None,
        )
        return rows, total, generations.assets_of(session, [g.id for g in rows])

    rows, total, assets = await state.db(page_of)
    pages = math.ceil(total / limit) if total else 0
    return ok(
        {
            "projects": [project_view(state, g, assets.get(g.id, [])) for g in rows],
            "pagination": {
                "page": page,
                "limit": limit,
                "total": total,
                "pages": pages,
                "has_more": page < pages,
            },
        }
    )


@router.delete(
    "/projects/{project_id}", response_model=Ok[DeletedProject], responses=error_responses()
)
async def delete_project(project_id: str, caller: CurrentCaller, state: StateDep) -> dict[str, Any]:
    """Deletes one of the caller's projects and its files (another account's is a 404)."""
    if not GENERATION_ID.fullmatch(project_id):
        raise ApiError(404, "not_found", "No project with that id.")
    keys = await state.db(generations.delete_project, project_id, caller.account_id)
    if keys is None:
        raise ApiError(404, "not_found", "No project with that id.")

    def remove_files() -> None:
        for key in keys:
            try:
                state.blobs.delete(key)
            except Exception:  # the rows are gone: a file left behind is only disk space
                log.warning("could not delete a project's file", extra={"blob_key": key})

    await run_in_threadpool(remove_files)
    return ok({"id": project_id, "deleted": True})
