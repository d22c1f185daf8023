"""The JSON answers, as models: what ``/openapi.json`` says each route returns.

Routes build their bodies with ``envelope.ok`` and declare these models, so
the schema describes every 200 answer and the error envelope of every status.
Each kind's own answer is declared with the kind (``generation/*.py``).
Models allow extra fields: the document's shapes are the floor, and additions
(an ``outputs`` list, a video's ``thumbnail``) must never be dropped on the way out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from rest_bridge.edge.errors import codes_for

T = TypeVar("T")


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class Ok(Answer, Generic[T]):
    """``{"success": true, "data": ...}``."""

    success: Literal[True] = True
    data: T


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorEnvelope(BaseModel):
    """Every error: a sentence a person can act on, a stable code, the request id."""

    success: Literal[False] = False
    error: str
    code: str
    request_id: str
    details: list[ErrorDetail] | None = None


class FileAnswer(Answer):
    url: str
    content_type: str
    file_name: str
    file_size: int
    width: int
    height: int


class Accepted(Answer):
    """``Prefer: respond-async``: the work goes on; these URLs follow it."""

    generation_id: str
    status: Literal["pending"]
    status_url: str
    events_url: str
    cancel_url: str
    request_id: str


class ProjectAnswer(Answer):
    id: str
    type: str
    prompt: str
    created_at: str
    url: str | None
    thumbnail: str | None
    metadata: dict[str, Any]
    model: str
    outputs: list[FileAnswer]
    parameters: dict[str, Any] = {}
    """The request's parameters, recorded so the project can be made again."""
    poster: str | None = None
    """A video's poster: a full-size frame of the clip (its middle), an image kept with the
    project and deleted with it; ``null`` for other kinds."""


class Pagination(Answer):
    page: int
    limit: int
    total: int
    pages: int
    has_more: bool


class ProjectsAnswer(Answer):
    projects: list[ProjectAnswer]
    pagination: Pagination


class DeletedProject(Answer):
    """A project deleted with its files."""

    id: str
    deleted: bool


class ModelAnswer(Answer):
    """One model; the kind's own fields (sizes, durations, mesh options) follow."""

    name: str
    kind: str
    default: bool
    price: dict[str, Any]


class ModelsAnswer(Answer):
    models: list[ModelAnswer]


class AccountAnswer(Answer):
    email: str | None
    plan: str
    points: int
    limit: int
    remaining: int
    reset: int


class GenerationStatus(Answer):
    """A generation's state; a completed one carries its answer's fields too."""

    generation_id: str
    type: str
    model: str
    status: str
    created_at: str
    completed_at: str | None
    progress: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class CancelAnswer(Answer):
    generation_id: str
    status: str
    refunded_points: int
    step_at_cancel: int | None


class HealthAnswer(Answer):
    status: Literal["ok"]


class ReadyAnswer(Answer):
    status: Literal["ready"]
    checks: dict[str, str]
    """Each dependency (``database``, ``redis``, ``inference``) and how it answered."""


ERROR_STATUSES: tuple[int, ...] = (400, 401, 404, 405, 409, 413, 422, 429, 503)
"""What any keyed route may answer besides its 200 (409 on the generation routes)."""
GENERATION_ERRORS: tuple[int, ...] = (*ERROR_STATUSES, 402, 502, 504)
"""A generation route adds the price, the inference server's failures and the deadline."""


SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "One Server-Sent Event: `event` names it, `data` is its JSON (`queued`: position; "
        "`progress`: stage, step, total, elapsed, estimated_remaining; `preview`: a small "
        "image of the work so far; `completed`: the 200 `data`; `failed`: the error "
        "envelope), `id` resumes after it (`Last-Event-ID`). A client ignores event names "
        "it does not know."
    ),
    "properties": {
        "event": {"type": "string", "examples": ["queued", "progress", "completed", "failed"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string"},
    },
    "required": ["event", "data"],
}
"""What each event of a ``text/event-stream`` answer holds (schemathesis reads it per event)."""

ENVELOPE_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}


def error_responses(
    statuses: Iterable[int] = ERROR_STATUSES, *, non_json_route: bool = False
) -> dict[int | str, Any]:
    """The error envelope under each status, described from ``errors.ERROR_CODES``.

    ``non_json_route``: the route answers 200 with another media type (events, files);
    FastAPI would file a model under that type, so the envelope is named by reference,
    as JSON (the JSON routes put ``ErrorEnvelope`` among the components).
    """
    responses: dict[int | str, Any] = {}
    for status in sorted(set(statuses)):
        codes = codes_for(status)
        if not codes:
            raise ValueError(f"no error code in errors.ERROR_CODES answers {status}")
        text = " ".join(f"`{e.code}`: {e.meaning}" for e in codes)
        if non_json_route:
            responses[status] = {"description": text, "content": ENVELOPE_JSON}
        else:
            responses[status] = {"model": ErrorEnvelope, "description": text}
    return responses


def generation_responses(answer: type[BaseModel]) -> dict[int | str, Any]:
    """A generation route: 200 with its answer, 202 when asked to run async, and its errors."""
    return {
        200: {"model": Ok[answer], "description": "The finished generation."},  # type: ignore[valid-type]
        202: {"model": Ok[Accepted], "description": "Started (`Prefer: respond-async`)."},
        **error_responses(GENERATION_ERRORS),
    }
