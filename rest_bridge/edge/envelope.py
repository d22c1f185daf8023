"""Request ids and the error envelope on every response, errors included."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rest_bridge.edge.errors import ApiError

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def request_id(request: Request) -> str:
    rid: str = request.scope.setdefault("state", {}).setdefault("request_id", new_request_id())
    return rid


class RequestIdMiddleware:
    """Pure ASGI (streams and disconnects pass through untouched).

    Adds ``X-Request-ID`` and any headers routes left in ``scope['state']['extra_headers']``
    (the rate-limit headers) to every response.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        rid = state.setdefault("request_id", new_request_id())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name == b"x-request-id" for name, _ in headers):
                    headers.append((b"x-request-id", rid.encode()))
                present = {name.lower() for name, _ in headers}
                for name, value in state.get("extra_headers", {}).items():
                    if name.lower().encode() not in present:  # error_response may have set it
                        headers.append((name.lower().encode(), str(value).encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


class JsonByDefault:
    """Reads an API body as JSON when the client named no type (``curl -d`` sends a form type).

    The document's examples always send JSON; a client that forgets the header
    should get its request served, not a confusing type error.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            ctype = dict(scope["headers"]).get(b"content-type", b"")
            if ctype in (b"", b"application/x-www-form-urlencoded"):
                scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)


def ok(data: Any) -> dict[str, Any]:
    """The success envelope: ``{"success": true, "data": ...}``, as in the document."""
    return {"success": True, "data": data}


def error_body(err: ApiError, rid: str) -> dict[str, Any]:
    """The error envelope, for HTTP answers, job events and stored final events alike."""
    body: dict[str, Any] = {
        "success": False,
        "error": err.message,
        "code": err.code,
        "request_id": rid,
    }
    if err.details:
        body["details"] = err.details
    return body


def error_response(request: Request, err: ApiError) -> JSONResponse:
    """The envelope; headers repeated here reach the client even past the middleware (a 500)."""
    headers = {"X-Request-ID": request_id(request), **err.headers}
    headers.update(request.scope.get("state", {}).get("extra_headers", {}))
    return JSONResponse(
        error_body(err, request_id(request)), status_code=err.status, headers=headers
    )


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _validation_to_api_error(exc: RequestValidationError) -> ApiError:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return ApiError(400, "invalid_request", "The request body is not valid JSON.")
    if any(e.get("type") == "missing" and tuple(e.get("loc", ())) == ("body",) for e in errors):
        # No bytes at all: not JSON either (valid JSON of another shape stays a 422).
        return ApiError(400, "invalid_request", "The request body is empty; send a JSON object.")
    if any(e.get("loc", ("",))[0] == "query" for e in errors):
        details = [
            {"field": _field_name(tuple(e["loc"])), "message": str(e["msg"])}
            for e in errors
            if e.get("loc", ("",))[0] == "query"
        ]
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        return ApiError(400, "invalid_request", f"Invalid query: {summary}", details)
    details = []
    for e in errors:
        msg = str(e["msg"])
        if e.get("type") == "extra_forbidden":
            msg = "unknown field; it cannot be set by a client"
        if e.get("type") == "model_attributes_type" or e.get("loc") == ("body",):
            msg = "the body must be a JSON object"
        details.append({"field": _field_name(tuple(e["loc"])), "message": msg})
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
    return ApiError(422, "validation_error", f"Invalid request: {summary}", details)


def install(app: FastAPI) -> None:
    """Registers the handlers that turn every failure into the envelope."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = _validation_to_api_error(exc)
        if err.status == 400 and "caller" not in request.scope.get("state", {}):
            # FastAPI parses the body before any dependency runs; the key is still
            # checked (and counted) first, so an unauthenticated caller learns nothing.
            from rest_bridge.callers.keys import authenticate

            try:
                await authenticate(request, request.app.state.bridge)
            except ApiError as auth_err:
                err = auth_err
        return error_response(request, err)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "invalid_request")
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404:
            message = "Not found."
        err = ApiError(exc.status_code, code, message, headers=dict(exc.headers or {}))
        return error_response(request, err)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        err = ApiError(500, "internal_error", "An unexpected error occurred; it has been logged.")
        return error_response(request, err)

    app.add_middleware(JsonByDefault)
    app.add_middleware(RequestIdMiddleware)
