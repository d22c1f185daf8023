"""The kinds of output this bridge serves, by the name they carry from REST body to database."""

from __future__ import annotations

from typing import Any

from genserve.vocabulary import Kind
from rest_bridge.generation.base import GenerationKind
from rest_bridge.generation.image import IMAGE
from rest_bridge.generation.three_d import THREE_D
from rest_bridge.generation.video import VIDEO

KINDS: dict[Kind, GenerationKind[Any]] = {unit.kind: unit for unit in (IMAGE, VIDEO, THREE_D)}


def unit_of(kind: str) -> GenerationKind[Any] | None:
    """The unit of a stored generation's kind (None for a kind this bridge no longer serves)."""
    return next((unit for name, unit in KINDS.items() if name == kind), None)
