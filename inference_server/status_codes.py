"""The one table from domain errors to gRPC status codes."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc

from genserve._internal.logs import request_id_var
from inference_server.errors import (
    GenerationCancelled,
    InferenceError,
    InvalidArgument,
    ModelLoadError,
    ModelNotFound,
    OutOfDeviceMemory,
    QueueFull,
)

log = logging.getLogger(__name__)
rpc_log = logging.getLogger("inference_server.rpc")  # one line per generation RPC

STATUS_FOR: dict[type[InferenceError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    QueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    OutOfDeviceMemory: grpc.StatusCode.RESOURCE_EXHAUSTED,
    GenerationCancelled: grpc.StatusCode.CANCELLED,
    ModelLoadError: grpc.StatusCode.FAILED_PRECONDITION,
}


def status_for(exc: BaseException) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in STATUS_FOR:
            return STATUS_FOR[cls]  # type: ignore[index]
    return grpc.StatusCode.INTERNAL


T = TypeVar("T")

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def request_id_of(request: Any, context: grpc.aio.ServicerContext) -> str | None:
    """The caller's request id: the ``x-request-id`` metadata, else the request's field.

    Only a plain token is kept (letters, digits, ``_.:-``, at most 128), so a
    caller cannot write what it likes into the logs.
    """
    candidates = [
        value for key, value in context.invocation_metadata() or () if key == REQUEST_ID_HEADER
    ]
    candidates.append(getattr(request, "request_id", ""))
    for value in candidates:
        if isinstance(value, str) and _REQUEST_ID.fullmatch(value):
            return value
    return None


def streaming_errors(
    handler: Callable[..., AsyncIterator[T]],
) -> Callable[..., AsyncIterator[T]]:
    """Ends a server-streaming handler with the mapped status instead of a traceback.

    Each call is logged once when it ends (method, model, status, duration), under
    the caller's request id, which every line logged while serving it carries too.
    """

    method = handler.__name__

    @functools.wraps(handler)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[T]:
        code = grpc.StatusCode.OK
        started = time.perf_counter()
        token = request_id_var.set(request_id_of(request, context))
        try:
            async for item in handler(self, request, context):
                yield item
        except InferenceError as exc:
            code = status_for(exc)
            await context.abort(code, str(exc))
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:  # a bug or a pipeline fault: INTERNAL, logged once
            code = grpc.StatusCode.INTERNAL
            log.exception("generation failed")
            await context.abort(code, f"generation failed: {exc}")
        finally:
            seconds = time.perf_counter() - started
            metrics = getattr(self, "metrics", None)
            if metrics is not None:
                metrics.requests.labels(method, code.name).inc()
                metrics.duration.labels(method).observe(seconds)
            rpc_log.info(
                "%s %s %s in %.0f ms",
                method,
                getattr(request, "model", "") or "(default model)",
                code.name,
                seconds * 1000,
                extra={
                    "rpc": method,
                    "model": getattr(request, "model", ""),
                    "code": code.name,
                    "duration_ms": round(seconds * 1000, 1),
                },
            )
            try:
                request_id_var.reset(token)
            except ValueError:  # the stream was closed from another context
                pass

    return wrapper
