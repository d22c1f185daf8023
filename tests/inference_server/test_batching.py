"""Batching in the device queue: requests of one model, size, steps and guidance share a call.

With the tiny SDXL (a real ``StableDiffusionXLPipeline``): requests that arrive
while the device is busy run as one call, each image the one its request makes
alone; a member cancelled mid-call is answered at the next step while the others
finish; requests that differ in what a call shares run apart; and a batch that
runs out of memory is split so only what cannot fit alone fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from genserve.inference.v1 import inference_pb2 as pb
from genserve.inference.v1 import inference_pb2_grpc as pb_grpc
from inference_server.errors import GenerationCancelled, OutOfDeviceMemory
from inference_server.model_config import ModelSpec, ModelTable
from inference_server.pipelines.image import ImageRun, _drop_rows, run_image
from inference_server.plans.image import ImagePlan
from inference_server.progress import StepCallback
from inference_server.registry import ModelRegistry
from inference_server.scheduler import Batching, DeviceQueue, QueuedWork, Seat
from tests.utils.procs import start_inference

SPEC = ModelSpec(
    name="nano-banana",
    kind="image",
    source="builtin:tiny-sdxl",
    width=64,
    height=64,
    steps=4,
    max_batch_size=8,
    batch_wait_ms=20,
)
ALONE = SPEC.model_copy(update={"name": "alone-banana", "max_batch_size": 1})


@pytest.fixture(scope="module")
def loaded(model_cache: Path) -> ModelRegistry:
    return ModelRegistry(ModelTable(models=[SPEC, ALONE]), model_cache, queue_size=32)


@pytest.fixture()
def registry(loaded: ModelRegistry) -> ModelRegistry:
    """The loaded pipelines, with a fresh device queue (a stopped one does not start again)."""
    loaded.queues["cpu"] = DeviceQueue("cpu", maxsize=32)
    return loaded


@pytest.fixture()
def queue(registry: ModelRegistry) -> DeviceQueue:
    """The fresh device queue the models run on."""
    return registry.queue_for(SPEC)


def _plan(spec: ModelSpec, prompt: str, seed: int, steps: int = 4, images: int = 1) -> ImagePlan:
    run = ImageRun(prompt, "", 64, 64, images, steps, 5.0, seed)
    return ImagePlan(spec=spec, run=run, fmt="png", seed=seed)


def _ignore(stage: str, step: int, total: int, position: int) -> None:
    pass


def _submit(
    queue: DeviceQueue, registry: ModelRegistry, plan: ImagePlan, on_progress: Any = _ignore
) -> QueuedWork:
    return queue.submit(plan.work(registry), on_progress, plan.batching(registry), payload=plan)


def _close(a: Image.Image, b: Image.Image) -> float:
    """The mean absolute difference of two images, in levels of 255."""
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean())


@dataclass
class _Hold:
    """What ``_held`` gives a test: the end of the holding work, and the calls' rows."""

    let_go: Callable[[], Awaitable[None]]
    rows: list[int]
    """The rows of each device call that batched work made, in order."""


@contextlib.asynccontextmanager
async def _held(queue: DeviceQueue) -> AsyncIterator[_Hold]:
    """The queue running with its device held by plain work, so what is submitted queues up
    until ``let_go()``; the queue is stopped on the way out."""
    release = threading.Event()

    def busy(on_step: StepCallback) -> None:
        release.wait(30)

    rows: list[int] = []
    queue.on_batch = rows.append
    queue.start()
    try:
        holder = queue.submit(busy, _ignore)
        while queue.running is None:
            await asyncio.sleep(0.01)

        async def let_go() -> None:
            release.set()
            await holder.future

        yield _Hold(let_go, rows)
    finally:
        release.set()
        await queue.stop()


async def test_requests_that_arrive_together_share_one_call_and_keep_their_images(
    registry: ModelRegistry, queue: DeviceQueue
) -> None:
    async with _held(queue) as hold:
        plans = [
            _plan(SPEC, f"prompt number {i}", seed=100 + i, images=1 + i % 2) for i in range(4)
        ]
        handles = [_submit(queue, registry, p) for p in plans]
        await hold.let_go()
        batched = [await h.future for h in handles]
    assert hold.rows == [6], hold.rows  # one call: 1 + 2 + 1 + 2 images
    pipe = registry.pipeline(SPEC)
    for plan, images in zip(plans, batched, strict=True):
        alone = run_image(pipe, plan.run, lambda *a: None)
        assert len(images) == len(alone) == plan.run.num_images
        for mine, solo in zip(images, alone, strict=True):
            assert _close(mine, solo) < 2.0, (plan.run.prompt, _close(mine, solo))
    # The images differ between requests: a mix-up of rows would not pass the checks above.
    assert _close(batched[0][0], batched[2][0]) > 5.0


async def test_a_cancelled_member_leaves_at_the_next_step_and_the_others_finish(
    registry: ModelRegistry, queue: DeviceQueue
) -> None:
    async with _held(queue) as hold:
        plans = [_plan(SPEC, f"long prompt {i}", seed=7 + i, steps=12) for i in range(3)]
        leaver_steps: list[int] = []
        handles: list[QueuedWork] = []

        def leaver_progress(stage: str, step: int, total: int, position: int) -> None:
            if stage == "denoising":
                leaver_steps.append(step)
                if step == 3:
                    queue.withdraw(handles[1])

        handles.append(_submit(queue, registry, plans[0]))
        handles.append(_submit(queue, registry, plans[1], leaver_progress))
        handles.append(_submit(queue, registry, plans[2]))
        await hold.let_go()
        with pytest.raises(GenerationCancelled):
            await handles[1].future
        others_running = not handles[0].future.done() and not handles[2].future.done()
        first, third = await handles[0].future, await handles[2].future
    assert hold.rows == [3]
    assert others_running  # the leaver was answered while the others still ran
    assert max(leaver_steps) <= 4, leaver_steps
    pipe = registry.pipeline(SPEC)
    for plan, images in ((plans[0], first), (plans[2], third)):
        (solo,) = run_image(pipe, plan.run, lambda *a: None)
        assert _close(images[0], solo) < 2.0


async def test_requests_that_differ_run_apart_and_max_batch_size_1_turns_it_off(
    registry: ModelRegistry, queue: DeviceQueue
) -> None:
    async with _held(queue) as hold:
        handles = [
            _submit(queue, registry, _plan(SPEC, "two steps", 1, steps=2)),
            _submit(queue, registry, _plan(SPEC, "three steps", 2, steps=3)),
            _submit(queue, registry, _plan(ALONE, "alone", 3)),
            _submit(queue, registry, _plan(ALONE, "alone too", 4)),
        ]
        await hold.let_go()
        for handle in handles:
            assert len(await handle.future) == 1
    # Each batchable one alone; the unbatched model never batches.
    assert hold.rows == [1, 1], hold.rows


async def test_a_lone_request_does_not_wait_for_company(
    registry: ModelRegistry, queue: DeviceQueue
) -> None:
    queue.start()
    try:
        handle = _submit(queue, registry, _plan(SPEC, "alone", 5))
        assert not handle.arrived_busy
        second = _submit(queue, registry, _plan(SPEC, "behind it", 6))
        assert second.arrived_busy
        await handle.future
        await second.future
    finally:
        await queue.stop()


def _oom_batching(calls: list[list[int]], fits: int, too_big: int) -> Batching:
    """A device call that runs out of memory above ``fits`` seats, or with ``too_big`` in it."""

    def run(seats: Sequence[Seat]) -> list[Any]:
        payloads = [seat.payload for seat in seats]
        calls.append(payloads)
        if len(seats) > fits or too_big in payloads:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [p * 10 for p in payloads]

    return Batching(key="k", size=1, limit=8, wait_s=0.0, run=run)


async def test_out_of_memory_splits_the_batch_and_only_what_cannot_fit_alone_fails() -> None:
    queue = DeviceQueue("cpu", maxsize=16)
    calls: list[list[int]] = []
    batching = _oom_batching(calls, fits=2, too_big=3)
    async with _held(queue) as hold:
        handles = [queue.submit(_unused, _ignore, batching, payload=p) for p in (1, 2, 3, 4)]
        await hold.let_go()
        outcomes: list[Any] = []
        for handle in handles:
            try:
                outcomes.append(await handle.future)
            except OutOfDeviceMemory as exc:
                outcomes.append(exc)
    assert outcomes[:2] == [10, 20] and outcomes[3] == 40
    assert isinstance(outcomes[2], OutOfDeviceMemory)
    assert calls == [[1, 2, 3, 4], [1, 2], [3, 4], [3], [4]]


def _unused(on_step: StepCallback) -> None:
    raise AssertionError("batched work runs through its Batching")


def test_dropping_rows_keeps_both_halves_of_guided_tensors() -> None:
    owner = [0, 1, 1, 2]
    generators = [torch.Generator().manual_seed(i) for i in range(4)]
    tensors: dict[str, Any] = {
        "latents": torch.arange(4).view(4, 1),
        "prompt_embeds": torch.arange(8).view(8, 1),  # unconditional rows first
        "step": torch.tensor(3),
    }
    _drop_rows(tensors, owner, generators, {1})
    assert tensors["latents"].flatten().tolist() == [0, 3]
    assert tensors["prompt_embeds"].flatten().tolist() == [0, 3, 4, 7]
    assert owner == [0, 2] and len(generators) == 2
    assert generators[1].initial_seed() == 3


@pytest.mark.server
def test_the_server_merges_concurrent_rpcs_and_streams_each_its_own_progress(
    model_cache: Path, logs: Path, tmp_path: Path
) -> None:
    """Over gRPC: three requests that queue behind a long one go out as one call of 3 rows."""
    models = tmp_path / "models.toml"
    models.write_text(
        '[models.nano-banana]\nkind = "image"\nsource = "builtin:tiny-sdxl"\n'
        "width = 64\nheight = 64\nsteps = 4\nmax_batch_size = 8\nbatch_wait_ms = 50\n"
    )
    proc, port, metrics_port = start_inference(model_cache, logs, models_file=models)
    try:
        stub = pb_grpc.InferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        long_one = iter(
            stub.GenerateImage(
                pb.GenerateImageRequest(prompt="first", steps=40, seed=1, num_images=1)
            )
        )
        next(long_one)  # queued: the device is about to be busy
        results: dict[int, list[pb.GenerateImageResponse]] = {}

        def call(i: int) -> None:
            request = pb.GenerateImageRequest(prompt=f"prompt {i}", seed=10 + i, num_images=1)
            results[i] = list(stub.GenerateImage(request))

        threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        assert list(long_one)[-1].WhichOneof("event") == "completion"
        for thread in threads:
            thread.join(60)
        for events in results.values():
            steps = [
                e.progress.step
                for e in events
                if e.WhichOneof("event") == "progress" and e.progress.stage == pb.STAGE_DENOISING
            ]
            assert steps == [1, 2, 3, 4]
            assert events[-1].WhichOneof("event") == "completion"
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        count = _sample(metrics, "genserve_inference_batch_rows_count")
        total = _sample(metrics, "genserve_inference_batch_rows_sum")
        assert (count, total) == (2.0, 4.0), (count, total)  # the long one alone, then 3 together
    finally:
        proc.stop()


def _sample(metrics: str, name: str) -> float:
    line = next(line for line in metrics.splitlines() if line.startswith(name + "{"))
    return float(line.rsplit(" ", 1)[1])
