"""The bridge's access log and request metrics, and its logging set-up.

``AccessLog`` is the outermost middleware: it gives the request its id (the one
``X-Request-ID`` and the envelope carry, and the inference server receives as
``x-request-id``), makes it the id of every line logged while the request is
served, and writes one line when the answer ends: method, route template (never
the path itself, which may hold a file's capability token, nor the query), status
and duration. Probes (``/healthz``, ``/readyz``, ``/metrics``) are logged at DEBUG.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genserve._internal import logs
from rest_bridge.callers.keys import KeyRedactor, install_key_redaction, redact
from rest_bridge.edge.envelope import new_request_id
from rest_bridge.edge.metrics import METRICS

log = logging.getLogger("rest_bridge.access")

PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
UNMATCHED = "unmatched"


def configure_logging(fmt: str, level: str) -> None:
    """The bridge's logging (``genserve._internal.logs``), with keys redacted from every line."""
    logs.configure("bridge", fmt=fmt, level=level, redact=redact, filters=[KeyRedactor()])
    install_key_redaction()
    # Alembic lists its plugins on every start; the migrations it runs are still logged.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


async def note_route(request: Request) -> None:
    """An app-wide dependency: leaves the route's template where ``AccessLog`` reads it.

    ``async`` although it awaits nothing: FastAPI runs a plain ``def`` dependency in
    a worker thread, a hand-off (and a wait for a free thread) on every request.

    The router sets ``scope["route"]`` on the scope it is given, which may be a copy
    made by a middleware on the way (``envelope.JsonByDefault`` makes one);
    ``scope["state"]`` is one dict shared by every copy.
    """
    path = getattr(request.scope.get("route"), "path", None)
    if isinstance(path, str):
        request.scope.setdefault("state", {})["route"] = path


def route_of(scope: Scope) -> str:
    """The template of the route that served the request (``/api/v1/generations/{id}``).

    ``unmatched`` for a request no route served (or refused before its route ran).
    """
    path = getattr(scope.get("route"), "path", None) or scope.get("state", {}).get("route")
    return path if isinstance(path, str) and path else UNMATCHED


class AccessLog:
    """Pure ASGI, so streamed answers pass through untouched and are timed to their end.

    The line is written just before the answer's last bytes are sent, so a client
    that has read the whole answer finds the line already in the log.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        rid = state.setdefault("request_id", new_request_id())
        # The id stays set: the task ends with the request, and the handler of an
        # unexpected error (outside this middleware) logs under it too.
        logs.request_id_var.set(rid)
        started = time.perf_counter()
        status = 0
        written = False

        def write(answered: int) -> None:
            nonlocal written
            written = True
            seconds = time.perf_counter() - started
            method = str(scope.get("method", ""))
            route = route_of(scope)
            METRICS.observe_request(method, route, answered, seconds, state)
            log.log(
                logging.DEBUG if route in PROBES else logging.INFO,
                "%s %s %d %.1f ms",
                method,
                route,
                answered,
                seconds * 1000,
                extra={
                    "method": method,
                    "route": route,
                    "status": answered,
                    "duration_ms": round(seconds * 1000, 1),
                    "client": (scope.get("client") or ("", 0))[0],
                },
            )

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                if not written:
                    write(status)
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except asyncio.CancelledError:
            status = status or 499  # the client went away
            raise
        except BaseException:
            status = status or 500
            raise
        finally:
            if not written:
                write(status or 499)
