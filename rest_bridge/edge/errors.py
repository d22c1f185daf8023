"""The REST error envelope: one exception type, rendered in one place."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ApiError(Exception):
    """An error answered in the contract's envelope.

    ``details`` holds ``{"field": ..., "message": ...}`` items for validation errors.
    """

    status: int
    code: str
    message: str
    details: list[dict[str, str]] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def validation_error(field_name: str, message: str, status: int = 422) -> ApiError:
    """A 422 for one field, in the shape every validation error takes."""
    return ApiError(
        status=status,
        code="validation_error",
        message=f"{field_name}: {message}",
        details=[{"field": field_name, "message": message}],
    )


@dataclass(frozen=True)
class ErrorCode:
    """One code of the error envelope: its HTTP status and what it means to a client."""

    code: str
    status: int
    meaning: str


ERROR_CODES: tuple[ErrorCode, ...] = (
    ErrorCode(
        "invalid_request", 400,
        "Malformed JSON, a bad query, or a bad header (`Idempotency-Key`).",
    ),
    ErrorCode("invalid_api_key", 401, "Missing, malformed, unknown or revoked key."),
    ErrorCode(
        "insufficient_points", 402,
        "The balance is below the request's price; nothing was debited.",
    ),
    ErrorCode(
        "forbidden", 403,
        "A signed-in page's request (session cookie and CSRF token) from another origin.",
    ),
    ErrorCode(
        "not_found", 404,
        "No such resource for this key (an id that cannot exist included).",
    ),
    ErrorCode(
        "method_not_allowed", 405,
        "The path exists but not with this method (`Allow` lists them).",
    ),
    ErrorCode(
        "idempotency_conflict", 409,
        "A request with this `Idempotency-Key` is still running (`Retry-After`).",
    ),
    ErrorCode("generation_finished", 409, "Cancel of a generation that has already ended."),
    ErrorCode(
        "generation_cancelled", 409,
        "The generation was cancelled; its points were given back.",
    ),
    ErrorCode(
        "generation_abandoned", 409,
        "The bridge running the generation went away; its points were given back.",
    ),
    ErrorCode(
        "generation_failed", 409,
        "A stored generation failed without a more precise code (its points were given back).",
    ),
    ErrorCode("payload_too_large", 413, "The request body (or the input image) is over its limit."),
    ErrorCode(
        "range_not_satisfiable", 416,
        "A file's `Range` starts past its end (`Content-Range: bytes */size`).",
    ),
    ErrorCode("validation_error", 422, "A field is invalid; `details` names each field."),
    ErrorCode(
        "rate_limited", 429,
        "Hourly limit of the key, or the brake on failed authentication (`Retry-After`).",
    ),
    ErrorCode("internal_error", 500, "Never expected: a bug, logged with the request id."),
    ErrorCode(
        "inference_error", 502,
        "The inference server failed the generation or sent a broken result; points given back.",
    ),
    ErrorCode(
        "inference_unavailable", 503,
        "No inference server serves the model right now (`Retry-After`).",
    ),
    ErrorCode(
        "overloaded", 503,
        "The inference queues or the rate-limit store are full or away (`Retry-After`).",
    ),
    ErrorCode(
        "storage_error", 503,
        "The file store is unreachable or unwritable (`Retry-After`); a generation whose "
        "output could not be stored failed and its points were given back.",
    ),
    ErrorCode(
        "not_ready", 503,
        "`/readyz` only: the database, Redis or every inference server is unreachable "
        "(`details` names which).",
    ),
    ErrorCode(
        "generation_timeout", 504,
        "The generation did not finish in time; points given back.",
    ),
)  # fmt: skip
"""Every code a client can meet, in answers and in failed events: the one table the
OpenAPI error responses (``answers.error_responses``) and the README's table
(``python -m tools.error_table``) come from."""


def codes_for(status: int) -> list[ErrorCode]:
    return [e for e in ERROR_CODES if e.status == status]
