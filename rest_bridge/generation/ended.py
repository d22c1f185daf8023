"""How an ended generation reads, from its row, whichever bridge ended it: its public error
code and its final event (the stream's last event, the status answer, the webhook's body)."""

from __future__ import annotations

from typing import Any

from rest_bridge.edge.envelope import error_body
from rest_bridge.edge.errors import ApiError
from storage.models import Generation

LIVE = ("pending", "running")


def error_code_of(gen: Generation) -> str:
    """The public code of an ended row's error: one of the error table's, whoever ended it.

    A cancelled row is ``generation_cancelled`` (rows written before this said
    ``cancelled``); a failed one without a code is ``generation_failed``.
    """
    if gen.status == "cancelled":
        return "generation_cancelled"
    return gen.error_code or "generation_failed"


def final_event(gen: Generation, result: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """``("completed", data)`` or ``("failed", error envelope)`` for an ended row."""
    if gen.status == "completed" and result is not None:
        return "completed", result
    err = ApiError(409, error_code_of(gen), gen.error_message or "The generation failed.")
    return "failed", error_body(err, gen.request_id)
