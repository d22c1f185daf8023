"""Request bodies are bounded before anything reads or checks them: one limit per route family.

A pure ASGI middleware, inside the request-id middleware and outside everything
else (routing, FastAPI's body parsing, authentication, the web forms). A
declared ``Content-Length`` over the route's limit is answered 413 without
reading a byte of the body; a chunked body is read here up to the limit and no
further, then handed to the application as if it had just arrived. Either way
an unauthenticated client learns nothing it could not learn from the limits
below, which are public (the contract's 413 ``payload_too_large``).

The 413 closes the connection (``Connection: close``), so the server stops
reading whatever the client still sends.

On the routes given as ``authenticated_first`` (the generation routes, where a 3D
body may be tens of megabytes) the caller is authenticated before a byte of the
body is read or its size judged: an anonymous or refused client's body is never
read (its answer closes the connection too), and a 413 to a valid key carries the
key's ``X-RateLimit-*`` headers like its other answers. The caller is kept on the
request, so the route's own authentication counts it once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genserve.vocabulary import MAX_INPUT_BYTES, MAX_PROMPT_CHARS
from rest_bridge.edge.envelope import error_body, error_response, new_request_id
from rest_bridge.edge.errors import ApiError
from rest_bridge.edge.memory import TRIM_AFTER_BYTES, give_back_memory

JSON_OTHER_FIELDS = 64 * 1024
"""Room for the fields of a generation body besides the prompt (model, webhook URL...)."""

JSON_BODY_LIMIT = 12 * MAX_PROMPT_CHARS + JSON_OTHER_FIELDS
"""A JSON API body: a prompt of ``MAX_PROMPT_CHARS`` characters each written as an escaped
surrogate pair (``\\ud83d\\ude00``, 12 bytes: the longest way to write one character),
plus ``JSON_OTHER_FIELDS``. 113,536 bytes."""

FORM_BODY_LIMIT = 16 * 1024
"""A web form (sign-up, log-in, a key's name): an email of at most 320 characters and a
password of at most 1,024, percent-encoded UTF-8 (up to 12 bytes a character), and a
CSRF token."""

THREE_D_PATHS = ("/api/v1/3d",)
JSON_API_PREFIXES = ("/api/", "/v1/")
"""The native API and the OpenAI-compatible one: JSON bodies, ``JSON_BODY_LIMIT``."""

JSON_ALLOWANCE = 64 * 1024
"""Room in a 3D body for the JSON around the image: the other fields and a data URL
prefix are a few hundred bytes, so this is generous."""


def three_d_body_limit(max_image_bytes: int) -> int:
    """The largest ``/api/v1/3d`` body that can still carry an image of ``max_image_bytes``.

    Base64 takes 4 characters per 3 bytes; an eighth more covers what JSON
    encoders add inside the string (escaped ``\\/``, escaped line breaks of
    MIME-wrapped base64), and ``JSON_ALLOWANCE`` the rest of the object. The
    exact limit is applied to the decoded bytes later; this bound only has to
    stop an oversized body before it is read into memory and parsed.
    """
    encoded = 4 * -(-max_image_bytes // 3)
    return encoded + encoded // 8 + JSON_ALLOWANCE


@dataclass(frozen=True)
class BodyRule:
    """A route family's limit, and the field its 413 names."""

    limit: int
    field: str = "body"
    what: str = "request body"


def body_rule(path: str, max_upload_bytes: int) -> BodyRule:
    """The limit of the route that serves ``path``."""
    if path in THREE_D_PATHS:
        return BodyRule(
            three_d_body_limit(max_upload_bytes),
            field="image_base64",
            what=f"request body (an image of at most {max_upload_bytes} bytes, as base64)",
        )
    if path.startswith(JSON_API_PREFIXES):
        return BodyRule(JSON_BODY_LIMIT)
    return BodyRule(FORM_BODY_LIMIT)


def too_large(rule: BodyRule) -> ApiError:
    message = f"the {rule.what} is larger than {rule.limit} bytes"
    return ApiError(
        413,
        "payload_too_large",
        f"{rule.field}: {message}",
        details=[{"field": rule.field, "message": message}],
    )


def _declared_length(scope: Scope) -> int | None:
    """``Content-Length`` as a number; None when absent (the server refuses a malformed one)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isascii() and text.isdigit() else None
    return None


def _chunked(scope: Scope) -> bool:
    return any(name == b"transfer-encoding" for name, _ in scope["headers"])


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """An ASGI ``receive`` that hands back the body already read, then the real channel.

    Later calls reach the server's own ``receive``, so a client that goes away
    is still noticed while a generation runs.
    """
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


Authenticator = Callable[[Request, Any], Awaitable[Any]]
"""``callers.keys.authenticate``: raises ``ApiError`` for a caller it refuses."""


class BodyLimit:
    """Refuses an oversized body with 413 before the application sees the request."""

    def __init__(
        self,
        app: ASGIApp,
        authenticated_first: Collection[str] = (),
        authenticate: Authenticator | None = None,
    ) -> None:
        self.app = app
        self.authenticated_first = frozenset(authenticated_first)
        self.authenticate = authenticate

    async def _refused_caller(self, scope: Scope, receive: Receive) -> JSONResponse | None:
        """The answer to a caller refused before its body is read; None lets it in."""
        if self.authenticate is None or scope["path"] not in self.authenticated_first:
            return None
        if scope.get("method") != "POST":
            return None
        request = Request(scope, receive)
        try:
            await self.authenticate(request, scope["app"].state.bridge)
        except ApiError as err:
            response = error_response(request, err)
            response.headers["Connection"] = "close"  # the unread body is not waited for
            return response
        return None

    def _rule(self, scope: Scope) -> BodyRule:
        bridge = getattr(getattr(scope.get("app"), "state", None), "bridge", None)
        max_upload = bridge.settings.max_upload_bytes if bridge is not None else MAX_INPUT_BYTES
        return body_rule(scope["path"], max_upload)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = await self._refused_caller(scope, receive)
        if refused is not None:
            await refused(scope, receive, send)
            return
        rule = self._rule(scope)
        declared = _declared_length(scope)
        if declared is not None:
            if declared > rule.limit:
                await self._refuse(scope, receive, send, rule)
                return
            try:
                await self.app(scope, receive, send)  # the server reads no more than declared
            finally:
                if declared > TRIM_AFTER_BYTES:  # once the body and its copies are gone
                    await run_in_threadpool(give_back_memory)
            return
        if not _chunked(scope):
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before its body ended
            body += message.get("body", b"")
            if len(body) > rule.limit:
                await self._refuse(scope, receive, send, rule)
                return
            if not message.get("more_body", False):
                break
        size = len(body)
        try:
            await self.app(scope, _replay(bytes(body), receive), send)
        finally:
            del body
            if size > TRIM_AFTER_BYTES:
                await run_in_threadpool(give_back_memory)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, rule: BodyRule) -> None:
        rid = scope.setdefault("state", {}).setdefault("request_id", new_request_id())
        response = JSONResponse(
            error_body(too_large(rule), rid),
            status_code=413,
            headers={"Connection": "close", "X-Request-ID": rid},
        )
        await response(scope, receive, send)
