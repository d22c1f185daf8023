"""genserve: generated gRPC stubs, the Python REST SDK and the command-line client.

    from genserve import Client
    client = Client()  # GENSERVE_BASE_URL, GENSERVE_API_KEY, or `genserve login`
    client.images.generate("a lighthouse at dawn").save("out/")

The SDK's names are loaded on first use, so the servers, which import
``genserve.vocabulary`` and the stubs, do not load the HTTP client with them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genserve.async_client import AsyncClient, AsyncGenerationStream, AsyncJob
    from genserve.client import Client, GenerationStream, Job
    from genserve.errors import (
        APIConnectionError,
        APITimeoutError,
        AuthenticationError,
        ConflictError,
        GenerationCancelledError,
        GenerationFailedError,
        GenerationTimeoutError,
        GenserveError,
        InsufficientPointsError,
        NotFoundError,
        PayloadTooLargeError,
        RateLimitError,
        ServerError,
        ServiceUnavailableError,
        ValidationError,
    )
    from genserve.params import ImageParams, ThreeDParams, VideoParams
    from genserve.results import (
        Accepted,
        Account,
        CancelResult,
        Event,
        GenerationResult,
        GenerationStatus,
        ImageFile,
        ImageResult,
        ModelFile,
        ModelInfo,
        ModelResult,
        OutputFile,
        Pagination,
        Project,
        ProjectPage,
        ThreeDResult,
        VideoFile,
        VideoResult,
    )

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["AsyncClient", "AsyncGenerationStream", "AsyncJob"], "genserve.async_client"),
    **dict.fromkeys(["Client", "GenerationStream", "Job"], "genserve.client"),
    **dict.fromkeys(
        [
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
            "PermissionDeniedError",
            "RateLimitError",
            "ServerError",
            "ServiceUnavailableError",
            "ValidationError",
        ],
        "genserve.errors",
    ),
    **dict.fromkeys(["ImageParams", "ThreeDParams", "VideoParams"], "genserve.params"),
    **dict.fromkeys(
        [
            "Accepted",
            "Account",
            "CancelResult",
            "Event",
            "GenerationResult",
            "GenerationStatus",
            "ImageFile",
            "ImageResult",
            "ModelFile",
            "ModelInfo",
            "ModelResult",
            "OutputFile",
            "Pagination",
            "Project",
            "ProjectPage",
            "ThreeDResult",
            "VideoFile",
            "VideoResult",
        ],
        "genserve.results",
    ),
}

__all__ = [
    "APIConnectionError",
    "APITimeoutError",
    "Accepted",
    "Account",
    "AsyncClient",
    "AsyncGenerationStream",
    "AsyncJob",
    "AuthenticationError",
    "CancelResult",
    "Client",
    "ConflictError",
    "Event",
    "GenerationCancelledError",
    "GenerationFailedError",
    "GenerationResult",
    "GenerationStatus",
    "GenerationStream",
    "GenerationTimeoutError",
    "GenserveError",
    "ImageFile",
    "ImageParams",
    "ImageResult",
    "InsufficientPointsError",
    "Job",
    "ModelFile",
    "ModelInfo",
    "ModelResult",
    "NotFoundError",
    "OutputFile",
    "Pagination",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "Project",
    "ProjectPage",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
    "ThreeDParams",
    "ThreeDResult",
    "ValidationError",
    "VideoFile",
    "VideoParams",
    "VideoResult",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'genserve' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
