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
import time
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
from inference_server.scheduler import (
    FILLED,
    TIMED_OUT,
    YIELDED,
    Batching,
    DeviceQueue,
    QueuedWork,
    Seat,
)
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


def _counting_batching(
    fill_s: float, key: str = "k", work_s: float = 0.0, size: int = 1
) -> Batching:
    """A device call of ``work_s`` seconds that answers each payload times ten; each request
    asks for ``size`` images."""

    def run(seats: Sequence[Seat]) -> list[Any]:
        time.sleep(work_s)  # the device at work, on the device thread
        return [seat.payload * 10 for seat in seats]

    return Batching(key=key, size=size, limit=8, wait_s=0.0, run=run, fill_s=fill_s)


async def _closed_loop(
    queue: DeviceQueue, batching: Batching, clients: int, rounds: int, pause: float
) -> None:
    """``clients`` that each send a request as soon as their last one is answered: all at
    once the first time, then client ``i`` after ``i * pause`` seconds (as answers and new
    requests cross a network one by one)."""

    async def client(i: int) -> None:
        for r in range(rounds):
            if r:
                await asyncio.sleep(i * pause)
            handle = queue.submit(_unused, _ignore, batching, payload=i * 100 + r)
            assert await handle.future == (i * 100 + r) * 10

    await asyncio.gather(*(client(i) for i in range(clients)))


async def _fills(queue: DeviceQueue) -> tuple[list[int], list[str]]:
    """Starts ``queue`` telling two lists the rows of its calls and how its fill waits ended."""
    rows: list[int] = []
    fills: list[str] = []
    queue.on_batch = rows.append
    queue.on_fill = fills.append
    queue.start()
    return rows, fills


async def test_closed_loop_clients_arriving_apart_keep_filling_one_call() -> None:
    """Four clients whose next requests reach the free device 20 ms apart (a call takes
    100 ms): without the fill the first would run alone each round; with it each round
    is one call of four, started when the fourth came."""
    queue = DeviceQueue("cpu", maxsize=16)
    rows, fills = await _fills(queue)
    batching = _counting_batching(fill_s=30.0, work_s=0.1)
    try:
        await _closed_loop(queue, batching, 4, rounds=4, pause=0.02)
    finally:
        await queue.stop()
    assert rows == [4, 4, 4, 4], rows
    assert fills == [FILLED] * 3, fills


async def test_with_fill_off_the_same_clients_split_their_calls() -> None:
    """The control of the test above: ``batch_fill_ms = 0`` is today's policy, and the
    clients' 20 ms apart never share a call (each finds the device free)."""
    queue = DeviceQueue("cpu", maxsize=16)
    rows, fills = await _fills(queue)
    try:
        await _closed_loop(queue, _counting_batching(fill_s=0.0, work_s=0.1), 4, 3, pause=0.02)
    finally:
        await queue.stop()
    assert rows[0] == 4 and max(rows[1:]) < 4 and sum(rows) == 12, rows
    assert fills == []


async def test_a_lone_client_is_never_held_for_company() -> None:
    """A lone client's last call had one row and nobody waiting: it never fill-waits, however
    long its fill (30 s here would show as a test that hangs)."""
    queue = DeviceQueue("cpu", maxsize=16)
    rows, fills = await _fills(queue)
    try:
        await _closed_loop(queue, _counting_batching(fill_s=30.0), 1, rounds=5, pause=0.0)
    finally:
        await queue.stop()
    assert rows == [1] * 5
    assert fills == []
    assert queue.recent_demand("k", asyncio.get_running_loop().time()) == 1


async def test_a_lone_client_asking_for_several_images_is_never_held() -> None:
    """Demand counts requests, not images: one client asking for four images, then for one,
    is still alone and never waits (a 30 s fill would show as a test that hangs)."""
    queue = DeviceQueue("cpu", maxsize=16)
    rows, fills = await _fills(queue)
    try:
        for batching in (_counting_batching(30.0, size=4), _counting_batching(30.0)):
            handle = queue.submit(_unused, _ignore, batching, payload=1)
            assert await handle.future == 10
    finally:
        await queue.stop()
    assert rows == [4, 1]
    assert fills == []


async def test_demand_that_went_away_costs_one_bounded_wait_then_none() -> None:
    """After four clients, one request alone waits its fill out once (it ran alone: the wait
    timed out, nobody joined), and the next one, its demand now one, does not wait."""
    queue = DeviceQueue("cpu", maxsize=16)
    rows, fills = await _fills(queue)
    batching = _counting_batching(fill_s=0.05)
    try:
        await _closed_loop(queue, batching, 4, rounds=1, pause=0.0)
        assert rows == [4] and fills == []
        for payload in (1, 2):
            handle = queue.submit(_unused, _ignore, batching, payload=payload)
            assert await handle.future == payload * 10
    finally:
        await queue.stop()
    assert rows == [4, 1, 1]
    assert fills == [TIMED_OUT]


async def test_a_fill_wait_yields_to_other_work_and_keeps_the_fair_order() -> None:
    """A call waiting for its key's demand starts at once when work of another key comes:
    the device never idles for company while someone else waits."""
    queue = DeviceQueue("cpu", maxsize=16)
    rows, fills = await _fills(queue)
    mine = _counting_batching(fill_s=30.0)
    other = _counting_batching(fill_s=30.0, key="other")
    try:
        await _closed_loop(queue, mine, 3, rounds=1, pause=0.0)
        handle = queue.submit(_unused, _ignore, mine, payload=7)
        while not fills and queue.running is None:
            await asyncio.sleep(0.01)
        stranger = queue.submit(_unused, _ignore, other, payload=8)
        assert await handle.future == 70 and await stranger.future == 80
    finally:
        await queue.stop()
    assert rows == [3, 1, 1]
    assert fills == [YIELDED]


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


@pytest.mark.server
def test_closed_loop_rpcs_keep_sharing_calls_and_a_lone_one_is_not_held(
    model_cache: Path, logs: Path, tmp_path: Path
) -> None:
    """Over gRPC: four clients, each sending its next request when its answer comes, run
    every round as one call of four; later, a lone request runs alone without a fill wait."""
    models = tmp_path / "models.toml"
    models.write_text(
        '[models.nano-banana]\nkind = "image"\nsource = "builtin:tiny-sdxl"\n'
        "width = 64\nheight = 64\nsteps = 4\nmax_batch_size = 4\nbatch_wait_ms = 50\n"
        "batch_fill_ms = 2000\n"
    )
    proc, port, metrics_port = start_inference(model_cache, logs, models_file=models)
    try:
        stub = pb_grpc.InferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))

        def generate(prompt: str, seed: int, steps: int = 4) -> None:
            request = pb.GenerateImageRequest(prompt=prompt, steps=steps, seed=seed, num_images=1)
            events = list(stub.GenerateImage(request))
            assert events[-1].WhichOneof("event") == "completion"

        hold = pb.GenerateImageRequest(prompt="hold", steps=40, seed=1, num_images=1)
        long_one = iter(stub.GenerateImage(hold))
        next(long_one)  # queued: the clients' first requests meet behind it

        def client(i: int) -> None:
            for r in range(5):
                generate(f"client {i} round {r}", seed=10 * i + r)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        assert list(long_one)[-1].WhichOneof("event") == "completion"
        for thread in threads:
            thread.join(120)
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        calls = _sample(metrics, "genserve_inference_batch_rows_count")
        rows = _sample(metrics, "genserve_inference_batch_rows_sum")
        small = _bucket(metrics, "genserve_inference_batch_rows_bucket", "3.0")
        # The long one alone, then five calls of four: no round split in two.
        assert (calls, rows, small) == (6.0, 21.0, 1.0), (calls, rows, small)
        assert _fill_count(metrics, "timed_out") == _fill_count(metrics, "yielded") == 0.0
        filled = _fill_count(metrics, "filled")

        time.sleep(1.5)  # longer than the queue remembers demand (DEMAND_MEMORY_S)
        generate("alone", seed=1)
        generate("alone again", seed=2)
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert _sample(metrics, "genserve_inference_batch_rows_count") == 8.0
        assert _sample(metrics, "genserve_inference_batch_rows_sum") == 23.0  # each alone
        # ... and neither waited for company: no fill wait began, of any outcome.
        assert _fill_count(metrics, "filled") == filled
        assert _fill_count(metrics, "timed_out") == _fill_count(metrics, "yielded") == 0.0
    finally:
        proc.stop()


def _bucket(metrics: str, name: str, le: str) -> float:
    line = next(
        line for line in metrics.splitlines() if line.startswith(name) and f'le="{le}"' in line
    )
    return float(line.rsplit(" ", 1)[1])


def _fill_count(metrics: str, outcome: str) -> float:
    """The fill waits that ended with ``outcome`` (0 before the first: no series yet)."""
    for line in metrics.splitlines():
        if line.startswith("genserve_inference_batch_fills_total{") and (
            f'outcome="{outcome}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _sample(metrics: str, name: str) -> float:
    line = next(line for line in metrics.splitlines() if line.startswith(name + "{"))
    return float(line.rsplit(" ", 1)[1])
