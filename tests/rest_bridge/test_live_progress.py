"""The remaining-time estimate of progress events: a stage is timed from when it began."""

from __future__ import annotations

from typing import Any

import pytest

from genserve.inference.v1 import inference_pb2 as pb
from rest_bridge.generation.live import LiveGeneration


def _progress(stage: int, step: int, total: int, elapsed: float) -> pb.Progress:
    return pb.Progress(stage=stage, step=step, total_steps=total, elapsed_seconds=elapsed)  # type: ignore[arg-type]


def _queued(position: int, elapsed: float) -> pb.Progress:
    return pb.Progress(stage=pb.STAGE_QUEUED, queue_position=position, elapsed_seconds=elapsed)


async def _estimates(*events: pb.Progress) -> list[tuple[str, int, Any]]:
    job = LiveGeneration(generation_id="g", account_id=1, request_id="req_test")
    for event in events:
        await job.on_progress(event)
    return [
        (e.data["stage"], e.data["step"], e.data["estimated_remaining"])
        for e in job.events
        if e.name == "progress"
    ]


async def test_steps_of_one_second_give_exact_estimates() -> None:
    """Four denoising steps of 1 s after a 0.5 s wait: 3, 2, 1, 0 seconds left.

    Timing from the stage's first event instead said 0 after the first step and
    1, 0.67, 0 after the others (short by (p-1)/p of the truth).
    """
    events = [
        _queued(0, 0.0),
        _queued(0, 0.5),  # leaves the queue: denoising starts now
        *(_progress(pb.STAGE_DENOISING, step, 4, 0.5 + step) for step in range(1, 5)),
    ]
    assert await _estimates(*events) == [
        ("denoising", 1, 3.0),
        ("denoising", 2, 2.0),
        ("denoising", 3, 1.0),
        ("denoising", 4, 0.0),
    ]


async def test_queue_time_is_not_counted_as_work() -> None:
    """Ten seconds in the queue, then 2 s steps: the estimate is about the steps."""
    events = [
        _queued(3, 0.0),
        _queued(1, 4.0),
        _queued(0, 10.0),
        _progress(pb.STAGE_DENOISING, 1, 5, 12.0),
        _progress(pb.STAGE_DENOISING, 2, 5, 14.0),
    ]
    assert await _estimates(*events) == [("denoising", 1, 8.0), ("denoising", 2, 6.0)]


async def test_each_stage_starts_where_the_one_before_ended() -> None:
    """Decoding and encoding are timed from the last event of the stage before."""
    events = [
        _queued(0, 0.0),
        _progress(pb.STAGE_DENOISING, 1, 2, 1.0),
        _progress(pb.STAGE_DENOISING, 2, 2, 2.0),
        _progress(pb.STAGE_DECODING, 0, 1, 2.0),
        _progress(pb.STAGE_DECODING, 1, 1, 2.5),
        _progress(pb.STAGE_ENCODING, 1, 4, 2.75),
        _progress(pb.STAGE_ENCODING, 2, 4, 3.0),
    ]
    assert await _estimates(*events) == [
        ("denoising", 1, 1.0),
        ("denoising", 2, 0.0),
        ("decoding", 0, None),  # started: no step done, no pace yet
        ("decoding", 1, 0.0),
        ("encoding", 1, 0.75),
        ("encoding", 2, 0.5),
    ]


async def test_a_second_server_restarts_the_clock() -> None:
    """A retry on another server restarts ``elapsed_seconds``: its stages are timed afresh."""
    events = [
        _queued(0, 0.0),
        _progress(pb.STAGE_DENOISING, 1, 4, 5.0),
        _queued(0, 0.1),  # the second server's clock
        _progress(pb.STAGE_DENOISING, 1, 4, 1.1),
    ]
    estimates = await _estimates(*events)
    assert estimates[-1] == ("denoising", 1, pytest.approx(3.0))
