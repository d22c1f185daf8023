"""A step callback for pipeline tests."""

from __future__ import annotations

from inference_server.errors import GenerationCancelled


class Recorder:
    """A step callback that remembers every call and can cancel at a chosen step."""

    def __init__(self, cancel_at: int | None = None) -> None:
        self.calls: list[tuple[int, int, str]] = []
        self.cancel_at = cancel_at

    def __call__(self, step: int, total: int, stage: str) -> None:
        self.calls.append((step, total, stage))
        if stage == "denoising" and step == self.cancel_at:
            raise GenerationCancelled("client went away")
