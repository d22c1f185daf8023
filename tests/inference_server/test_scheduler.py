"""The device queue with a real pipeline: cancellation at the next step, bounded queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from inference_server.errors import GenerationCancelled, QueueFull
from inference_server.loader import load_pipeline
from inference_server.model_config import ModelSpec
from inference_server.pipelines.image import ImageRun, run_image
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
    assert positions[2][-1] == 1  # one request (the running one) ahead of it, then it runs
    await queue.stop()
