"""What the synchronous and the asyncio clients share: requests, retries, parsing.

Each kind's generation body is built from its declaration in ``genserve.params``."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from genserve._sse import RawEvent
from genserve.errors import (
    APIConnectionError,
    APITimeoutError,
    GenserveError,
    error_from_envelope,
    error_from_response,
)
from genserve.results import Event, GenerationResult, result_from_data

VERSION = "0.1.0"
USER_AGENT = f"genserve-python/{VERSION}"
DEFAULT_TIMEOUT = 600.0
"""Seconds a request may take: a synchronous generation answers only when it is done."""
CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 2
RETRY_STATUSES = frozenset({429, 503})
EVENTS_ACCEPT = "text/event-stream"

RETRYABLE_TRANSPORT: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)
"""Broken or refused connections. Read timeouts are not among them: a generation that
takes longer than the timeout would only be started again (and the first cancelled)."""


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter; ``Retry-After`` wins when the server sends it.

    A ``Retry-After`` longer than ``max_retry_after`` (an hourly limit spent) is not
    waited for: the error is raised at once, with its ``retry_after``.
    """

    max_retries: int = DEFAULT_MAX_RETRIES
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    max_retry_after: float = 60.0

    def backoff(self, attempt: int) -> float:
        """Full jitter between half and all of ``base * 2**attempt`` (capped)."""
        ceiling = min(self.backoff_max, self.backoff_base * (2**attempt))
        return ceiling * (0.5 + random.random() / 2)

    def delay_after_error(self, err: GenserveError, attempt: int, idempotent: bool) -> float | None:
        """Seconds to wait before the next attempt, or None when not to retry."""
        if attempt >= self.max_retries:
            return None
        retryable = err.status in RETRY_STATUSES or (
            idempotent and err.status == 409 and err.code == "idempotency_conflict"
        )
        if not retryable:
            return None
        if err.retry_after is not None:
            if err.retry_after > self.max_retry_after:
                return None
            return err.retry_after + random.random() * 0.1
        return self.backoff(attempt)

    def delay_after_transport(self, exc: Exception, attempt: int) -> float | None:
        if attempt >= self.max_retries or not isinstance(exc, RETRYABLE_TRANSPORT):
            return None
        return self.backoff(attempt)


def connection_error(exc: Exception, url: str) -> APIConnectionError:
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(
            f"{url} did not answer in time ({type(exc).__name__})", code="timeout"
        )
    detail = str(exc) or type(exc).__name__
    return APIConnectionError(f"cannot reach {url}: {detail}", code="connection_error")


def new_idempotency_key() -> str:
    """One key per logical call, sent with every attempt of it."""
    return f"gsdk-{uuid.uuid4().hex}"


@dataclass
class Call:
    """One logical request, sent as many times as the retry policy allows."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    timeout: float | httpx.Timeout | None = None

    def content(self) -> bytes | None:
        if self.body is None:
            return None
        return json.dumps(self.body, separators=(",", ":"), ensure_ascii=False).encode()


def request_headers(api_key: str | None, call: Call) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if call.body is not None:
        headers["Content-Type"] = "application/json"
    if call.idempotency_key:
        headers["Idempotency-Key"] = call.idempotency_key
    headers.update(call.headers)
    return headers


def as_timeout(value: float | httpx.Timeout | None) -> httpx.Timeout | None:
    if value is None or isinstance(value, httpx.Timeout):
        return value
    return httpx.Timeout(value, connect=min(CONNECT_TIMEOUT, value))


def envelope_data(response: httpx.Response) -> Any:
    """The ``data`` of a success envelope; the error for anything else."""
    try:
        body = response.json()
    except ValueError:
        raise error_from_response(
            response.status_code, response.headers, response.content
        ) from None
    if not isinstance(body, dict) or body.get("success") is not True:
        if isinstance(body, dict) and ("code" in body or "error" in body):
            raise error_from_envelope(body, status=response.status_code, headers=response.headers)
        raise error_from_response(response.status_code, response.headers, response.content)
    return body.get("data")


def is_event_stream(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith(EVENTS_ACCEPT)


def is_replayed(response: httpx.Response) -> bool:
    return response.headers.get("idempotent-replayed", "").lower() == "true"


def to_event(raw: RawEvent, kind: str | None, bind: Any) -> Event:
    """A typed event: a ``completed`` one carries its result, a ``failed`` one its error."""
    event = Event(type=raw.name, data=raw.data, id=raw.id)
    if raw.name == "completed":
        result = result_from_data(raw.data, kind)
        bind(result)
        event.result = result
    elif raw.name == "failed":
        err = error_from_envelope(raw.data)
        err.event = event
        event.error = err
    return event


def completed_from_json(data: Any, kind: str | None, bind: Any) -> Event:
    """A stream request answered with stored JSON (an idempotent replay) as one event."""
    mapping = data if isinstance(data, dict) else {}
    result = result_from_data(mapping, kind)
    result.replayed = True
    bind(result)
    return Event(type="completed", data=mapping, id=None, result=result)


def typed_result(data: Any, kind: str, response: httpx.Response, bind: Any) -> GenerationResult:
    result = result_from_data(data if isinstance(data, dict) else {}, kind)
    result.replayed = is_replayed(response)
    bind(result)
    return result


# ---------------------------------------------------------------- query and headers


def _put(body: dict[str, Any], **values: Any) -> dict[str, Any]:
    body.update({k: v for k, v in values.items() if v is not None})
    return body


def project_params(
    *,
    type: str | None,
    page: int | None,
    limit: int | None,
    sort: str | None,
    order: str | None,
    q: str | None = None,
) -> dict[str, Any]:
    return _put({}, type=type, page=page, limit=limit, sort=sort, order=order, q=q)


def generation_headers(*, stream: bool = False, respond_async: bool = False) -> dict[str, str]:
    if respond_async:
        return {"Prefer": "respond-async"}
    if stream:
        return {"Accept": EVENTS_ACCEPT}
    return {}


def wait_timeout_error(generation_id: str, timeout: float) -> GenserveError:
    from genserve.errors import GenerationTimeoutError

    return GenerationTimeoutError(
        f"generation {generation_id} did not finish within {timeout:g} s (it goes on running; "
        "cancel it or wait again)",
        code="wait_timeout",
    )
