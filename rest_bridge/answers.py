"""The JSON answers, as models: what ``/openapi.json`` says each route returns.

Routes build their bodies with ``envelope.ok`` and declare these models, so
the schema describes every 200 answer and the error envelope of every status.
Each kind's own answer is declared with the kind (``generation/*.py``).
Models allow extra fields: the document's shapes are the floor, and additions
(an ``outputs`` list, a video's ``thumbnail``) must never be dropped on the way out.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

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


class Pagination(Answer):
    page: int
    limit: int
    total: int
    pages: int
    has_more: bool


class ProjectsAnswer(Answer):
    projects: list[ProjectAnswer]
    pagination: Pagination


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


ERROR_STATUSES: dict[int, str] = {
    400: "Malformed JSON or query (`invalid_request`).",
    401: "Missing, malformed, unknown or revoked key (`invalid_api_key`).",
    404: "No such resource for this key (`not_found`).",
    409: "A conflict (`idempotency_conflict`, `generation_finished`, `generation_cancelled`).",
    413: "Body too large (`payload_too_large`).",
    422: "A field is invalid (`validation_error`, with `details`).",
    429: "Hourly limit or failed-authentication brake (`rate_limited`, with `Retry-After`).",
    503: "No inference server, or busy (`inference_unavailable`, `overloaded`).",
}
GENERATION_ERRORS = {
    **ERROR_STATUSES,
    402: "Not enough points (`insufficient_points`).",
    502: "The inference server failed (`inference_error`).",
    504: "The generation did not finish in time (`generation_timeout`).",
}


def error_responses(statuses: dict[int, str] = ERROR_STATUSES) -> dict[int | str, Any]:
    return {
        status: {"model": ErrorEnvelope, "description": text}
        for status, text in sorted(statuses.items())
    }


def generation_responses(answer: type[BaseModel]) -> dict[int | str, Any]:
    """A generation route: 200 with its answer, 202 when asked to run async, and its errors."""
    return {
        200: {"model": Ok[answer], "description": "The finished generation."},  # type: ignore[valid-type]
        202: {"model": Ok[Accepted], "description": "Started (`Prefer: respond-async`)."},
        **error_responses(GENERATION_ERRORS),
    }
