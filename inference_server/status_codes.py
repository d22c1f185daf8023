"""The one table from domain errors to gRPC status codes."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc

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


def streaming_errors(
    handler: Callable[..., AsyncIterator[T]],
) -> Callable[..., AsyncIterator[T]]:
    """Ends a server-streaming handler with the mapped status instead of a traceback."""

    method = handler.__name__

    @functools.wraps(handler)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[T]:
        code = grpc.StatusCode.OK
        started = time.perf_counter()
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
            metrics = getattr(self, "metrics", None)
            if metrics is not None:
                metrics.requests.labels(method, code.name).inc()
                metrics.duration.labels(method).observe(time.perf_counter() - started)

    return wrapper
