"""Domain errors of the inference server.

One table in ``status_codes.py`` maps each class to a gRPC status code, applied
by the ``streaming_errors`` decorator on the servicer's generating handlers;
pipeline code raises these and never touches gRPC.
"""

from __future__ import annotations


class InferenceError(Exception):
    """Base class: a failure a caller can be told about."""


class InvalidArgument(InferenceError):
    """The request cannot be served as asked (bad size, unknown option)."""


class ModelNotFound(InferenceError):
    """No model of that public name and kind is configured on this server."""


class QueueFull(InferenceError):
    """The bounded queue in front of a pipeline has no room."""


class GenerationCancelled(InferenceError):
    """The caller went away or cancelled; raised from a step callback."""


class OutOfDeviceMemory(InferenceError):
    """The device ran out of memory; the request may succeed later or smaller."""


class ModelLoadError(InferenceError):
    """The model's checkpoint could not be loaded."""
