"""The REST error envelope: one exception type, rendered in one place."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ApiError(Exception):
    """An error answered in the contract's envelope.

    ``details`` holds ``{"field": ..., "message": ...}`` items for validation errors.
    """

    status: int
    code: str
    message: str
    details: list[dict[str, str]] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def validation_error(field_name: str, message: str, status: int = 422) -> ApiError:
    """A 422 for one field, in the shape every validation error takes."""
    return ApiError(
        status=status,
        code="validation_error",
        message=f"{field_name}: {message}",
        details=[{"field": field_name, "message": message}],
    )
