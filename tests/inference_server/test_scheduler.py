"""The device queue with a real pipeline: cancellation at the next step, bounded queue."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from inference_server.errors import GenerationCancelled, QueueFull
from inference_server.loader import load_pipeline
from inference_server.model_config import ModelSpec
from inference_server.pipelines.image import ImageRun, run_image
from inference_server.progress import StepCallback
from inference_server.scheduler import DeviceQueue, QueuedWork

SPEC = ModelSpec(name="nano-banana", kind="image", source="builtin:tiny-sdxl", width=64, height=64)


@pytest.fixture(scope="module")
def pipe(model_cache: Path) -> object:
    return load_pipeline(SPEC, model_cache)


async def test_cancel_stops_at_the_next_step(pipe: object) -> None:
    queue = DeviceQueue("cpu", maxsize=4)
    queue.start()
    steps_seen: list[int] = []
    cancel_at = 3
    queued_ref: list[QueuedWork] = []

    def on_progress(stage: str, step: int, total: int, position: int) -> None:
        if stage == "denoising":
            steps_seen.append(step)
            if step == cancel_at:
                queue.withdraw(queued_ref[0])

    run = ImageRun("a", "", 64, 64, 1, 50, 5.0, 1)
    handle = queue.submit(lambda on_step: run_image(pipe, run, on_step), on_progress)
    queued_ref.append(handle)
    with pytest.raises(GenerationCancelled):
        await handle.future
    await asyncio.sleep(0.05)
    after = [s for s in steps_seen if s > cancel_at]
    assert len(after) <= 1, steps_seen
    await queue.stop()


async def test_full_queue_refuses_at_once(pipe: object) -> None:
    queue = DeviceQueue("cpu", maxsize=2)
    queue.start()
    run = ImageRun("a", "", 64, 64, 1, 20, 5.0, 1)
    handles = [queue.submit(lambda on_step: run_image(pipe, run, on_step), lambda *a: None)]
    while queue.running is None:
        await asyncio.sleep(0.01)
    for _ in range(2):
        handles.append(queue.submit(lambda on_step: run_image(pipe, run, on_step), lambda *a: None))
    with pytest.raises(QueueFull):
        queue.submit(lambda on_step: run_image(pipe, run, on_step), lambda *a: None)
    for h in handles:
        queue.withdraw(h)
    await asyncio.gather(*(h.future for h in handles), return_exceptions=True)
    await queue.stop()


async def test_queue_positions_are_reported(pipe: object) -> None:
    queue = DeviceQueue("cpu", maxsize=8)
    queue.start()
    positions: dict[int, list[int]] = {0: [], 1: [], 2: []}
    run = ImageRun("a", "", 64, 64, 1, 4, 5.0, 1)
    handles = []
    for i in range(3):
        handles.append(
            queue.submit(
                lambda on_step: run_image(pipe, run, on_step),
                lambda stage, step, total, pos, i=i: (
                    positions[i].append(pos) if stage == "queued" else None
                ),
            )
        )
    await asyncio.gather(*(h.future for h in handles))
    assert positions[2][0] == 2
    assert positions[2] == sorted(positions[2], reverse=True)
    # One request (the running one) ahead of it, then 0 as it leaves the queue and runs.
    assert positions[2][-2:] == [1, 0]
    assert positions[0] == [0]  # it ran at once: told once, not again
    await queue.stop()


def _steps(count: int, pause_s: float = 0.01) -> Callable[[StepCallback], int]:
    """Device work without a model: ``count`` steps of ``pause_s`` each."""

    def work(on_step: StepCallback) -> int:
        for step in range(1, count + 1):
            time.sleep(pause_s)
            on_step(step, count, "denoising")
        return count

    return work


def _ignore(stage: str, step: int, total: int, position: int) -> None:
    pass


async def test_the_depth_is_told_on_every_change() -> None:
    """Submit, start, withdraw and finish all tell the gauge; idle reads 0."""
    queue = DeviceQueue("cpu", maxsize=8)
    depths: list[int] = []
    queue.on_depth = depths.append
    queue.start()
    first = queue.submit(_steps(20), _ignore)
    while queue.running is None:
        await asyncio.sleep(0.005)
    second = queue.submit(_steps(2), _ignore)
    third = queue.submit(_steps(2), _ignore)
    queue.withdraw(third)
    await first.future
    await second.future
    assert depths[-1] == 0
    assert max(depths) == 2
    assert depths == [1, 0, 1, 2, 1, 0], depths  # submit, start, submit x2, withdraw, start
    await queue.stop()


async def test_abandoned_outcomes_are_not_reported_as_never_retrieved() -> None:
    """A job withdrawn while queued or while running (its RPC cancelled, or past its
    deadline) ends with an exception nobody awaits; asyncio must not log it at ERROR."""
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context["message"]))
    try:
        queue = DeviceQueue("cpu", maxsize=8)
        queue.start()
        running = queue.submit(_steps(200), _ignore)
        while queue.running is None:
            await asyncio.sleep(0.005)
        waiting = queue.submit(_steps(2), _ignore)
        queue.withdraw(waiting)  # cancelled while queued
        queue.withdraw(running)  # cancelled mid-run: stops at its next step
        while queue.running is not None:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        assert running.future.done() and waiting.future.done()
        del running, waiting
        gc.collect()
        await asyncio.sleep(0)
        await queue.stop()
    finally:
        loop.set_exception_handler(previous)
    assert not [m for m in reported if "never retrieved" in m], reported
