"""The callback a pipeline runner calls after each unit of work."""

from __future__ import annotations

from typing import Protocol


class StepCallback(Protocol):
    """Told of each finished step; raises ``GenerationCancelled`` to stop the run.

    ``stage`` is one of ``"loading"`` (the model comes onto its device, ``(0, 1)``),
    ``"denoising"``, ``"decoding"``, ``"encoding"``.
    """

    def __call__(self, step: int, total: int, stage: str) -> None: ...
