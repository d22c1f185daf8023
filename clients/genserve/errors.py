"""The error envelope as exceptions: one class per kind of failure, chosen by ``code``.

Every error answer of genserve is ``{"success": false, "error", "code", "request_id",
"details"?}``; the SDK raises it as the class of its ``code`` (the HTTP status decides
when the code is one this version does not know). A failed job's event stream and
stored status carry the same envelope, and raise the same classes.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = [
    "APIConnectionError",
    "APITimeoutError",
    "AuthenticationError",
    "ConflictError",
    "GenerationCancelledError",
    "GenerationFailedError",
    "GenerationTimeoutError",
    "GenserveError",
    "InsufficientPointsError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
    "ValidationError",
    "error_from_envelope",
    "error_from_response",
    "parse_retry_after",
]


class GenserveError(Exception):
    """Any failure the SDK reports.

    ``status`` is the HTTP status (None when there was no answer, or for an error
    read from an event stream, where the code's usual status is given instead);
    ``code`` the envelope's snake_case code; ``message`` its sentence;
    ``request_id`` the ``req_...`` id to quote in a bug report; ``retry_after``
    the seconds of ``Retry-After``, when sent; ``details`` the per-field list of
    validation errors (``[{"field": ..., "message": ...}]``).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "error",
        request_id: str | None = None,
        retry_after: float | None = None,
        details: list[dict[str, Any]] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after
        self.details = details or []
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})
        self.event: object | None = None
        """The ``failed`` event (a ``genserve.Event``) this error was read from, when it came
        from a stream. Typed ``object`` so that errors need not import results (which import
        errors)."""

    def __str__(self) -> str:
        text = f"{self.code}: {self.message}"
        if self.request_id:
            text += f" (request_id {self.request_id})"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


class APIConnectionError(GenserveError):
    """The server could not be reached, or the connection broke before an answer."""


class APITimeoutError(APIConnectionError):
    """No answer within the client's timeout."""


class AuthenticationError(GenserveError):
    """401 ``invalid_api_key``: missing, malformed, unknown or revoked key."""


class PermissionDeniedError(GenserveError):
    """403 ``forbidden``: a web-session request that did not come from a genserve page."""


class InsufficientPointsError(GenserveError):
    """402 ``insufficient_points``: the balance is below the price; nothing was debited."""


class ValidationError(GenserveError):
    """422 ``validation_error`` or 400 ``invalid_request``; ``details`` names each field."""


class NotFoundError(GenserveError):
    """404 ``not_found``."""


class ConflictError(GenserveError):
    """409: ``idempotency_conflict`` or a ``generation_*`` state conflict."""


class GenerationCancelledError(ConflictError):
    """409 ``generation_cancelled``: the generation was cancelled and refunded."""


class GenerationFailedError(ConflictError):
    """409 ``generation_failed`` / ``generation_abandoned``: ended without a result, refunded."""


class PayloadTooLargeError(GenserveError):
    """413 ``payload_too_large``: the body or the input image is over its limit."""


class RateLimitError(GenserveError):
    """429 ``rate_limited``: ``retry_after`` says when to try again."""


class ServerError(GenserveError):
    """5xx: ``internal_error`` (a bug on the server) or ``inference_error``."""


class ServiceUnavailableError(ServerError):
    """503 ``inference_unavailable``, ``overloaded``, ``storage_error`` (or ``not_ready``);
    ``retry_after`` says when to retry."""


class GenerationTimeoutError(GenserveError, builtins.TimeoutError):
    """504 ``generation_timeout`` (refunded), or a job not done within ``Job.wait``'s timeout
    (code ``wait_timeout``: the job itself goes on)."""


CODE_CLASSES: dict[str, type[GenserveError]] = {
    "invalid_api_key": AuthenticationError,
    "insufficient_points": InsufficientPointsError,
    "validation_error": ValidationError,
    "invalid_request": ValidationError,
    "not_found": NotFoundError,
    "forbidden": PermissionDeniedError,
    "idempotency_conflict": ConflictError,
    "generation_finished": ConflictError,
    "generation_cancelled": GenerationCancelledError,
    "generation_failed": GenerationFailedError,
    "generation_abandoned": GenerationFailedError,
    "payload_too_large": PayloadTooLargeError,
    "rate_limited": RateLimitError,
    "internal_error": ServerError,
    "storage_error": ServiceUnavailableError,
    "inference_error": ServerError,
    "inference_unavailable": ServiceUnavailableError,
    "overloaded": ServiceUnavailableError,
    "not_ready": ServiceUnavailableError,
    "generation_timeout": GenerationTimeoutError,
}
STATUS_CLASSES: dict[int, type[GenserveError]] = {
    400: ValidationError,
    401: AuthenticationError,
    402: InsufficientPointsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitError,
    503: ServiceUnavailableError,
    504: GenerationTimeoutError,
}
CODE_STATUSES: dict[str, int] = {
    "invalid_request": 400,
    "invalid_api_key": 401,
    "insufficient_points": 402,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "idempotency_conflict": 409,
    "generation_finished": 409,
    "generation_cancelled": 409,
    "generation_failed": 409,
    "generation_abandoned": 409,
    "payload_too_large": 413,
    "range_not_satisfiable": 416,
    "validation_error": 422,
    "rate_limited": 429,
    "internal_error": 500,
    "storage_error": 503,
    "inference_error": 502,
    "inference_unavailable": 503,
    "overloaded": 503,
    "not_ready": 503,
    "generation_timeout": 504,
}
"""A code's usual status: what an error read from an event stream (no status of its own) gets."""


def class_for(code: str | None, status: int | None) -> type[GenserveError]:
    if code and code in CODE_CLASSES:
        return CODE_CLASSES[code]
    if status is not None:
        if status in STATUS_CLASSES:
            return STATUS_CLASSES[status]
        if status >= 500:
            return ServerError
    return GenserveError


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: a number, or an HTTP date (seconds from now)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    from datetime import datetime, timezone

    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def error_from_envelope(
    body: Mapping[str, Any],
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> GenserveError:
    """The exception for an error envelope (from an answer, a failed event or a status)."""
    code = str(body.get("code") or (f"http_{status}" if status else "error"))
    message = str(body.get("error") or body.get("message") or "The request failed.")
    request_id = body.get("request_id")
    if request_id is None and headers is not None:
        request_id = _header(headers, "x-request-id")
    details = body.get("details")
    retry_after = parse_retry_after(_header(headers, "retry-after")) if headers else None
    cls = class_for(code, status)
    return cls(
        message,
        status=status if status is not None else CODE_STATUSES.get(code),
        code=code,
        request_id=str(request_id) if request_id is not None else None,
        retry_after=retry_after,
        details=list(details) if isinstance(details, list) else None,
        body=dict(body),
        headers=headers,
    )


def error_from_response(status: int, headers: Mapping[str, str], content: bytes) -> GenserveError:
    """The exception for an HTTP error answer, whether or not it carries the envelope."""
    import json

    body: Any = None
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = None
    if isinstance(body, dict) and ("code" in body or "error" in body):
        return error_from_envelope(body, status=status, headers=headers)
    snippet = content[:200].decode("utf-8", "replace").strip()
    message = f"HTTP {status} without genserve's error envelope"
    if snippet:
        message += f": {snippet}"
    return error_from_envelope(
        {"code": f"http_{status}", "error": message}, status=status, headers=headers
    )


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, item in headers.items():
        if key.lower() == lowered:
            return item
    return None
