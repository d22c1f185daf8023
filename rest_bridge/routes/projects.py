"""GET /api/v1/projects: the caller's finished generations, paged and filtered."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from genserve.vocabulary import PROJECT_TYPES, ProjectType
from rest_bridge.callers.keys import CurrentCaller, StateDep
from rest_bridge.edge.answers import Ok, ProjectsAnswer, error_responses
from rest_bridge.edge.envelope import ok
from rest_bridge.edge.views import file_view, iso
from rest_bridge.generation.kinds import unit_of
from rest_bridge.state import BridgeState
from storage import generations
from storage.models import Asset, Generation

INPUT_ROLES = {"input": "input_image", "mask": "mask_image"}
"""Assets of a caller's inputs, and the metadata field that gives each one's URL."""

router = APIRouter(prefix="/api/v1", tags=["projects"])


def project_view(state: BridgeState, gen: Generation, assets: list[Asset]) -> dict[str, Any]:
    """One project in the document's shape, plus an ``outputs`` list of every file."""
    primaries = [a for a in assets if a.role == "primary"]
    previews = {a.index: a for a in assets if a.role == "preview"}
    first = primaries[0] if primaries else None
    thumb = previews.get(0) or first
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
        "metadata": metadata,
        "model": gen.model,
        "outputs": [file_view(state, a) for a in primaries],
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
) -> dict[str, Any]:
    def page_of(session: Any) -> tuple[list[Generation], int, dict[str, list[Asset]]]:
        rows, total = generations.list_projects(
            session,
            account_id=caller.account_id,
            kind=PROJECT_TYPES.get(type),
            page=page,
            limit=limit,
            descending=order == "desc",
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
