"""Taking turns: the fair queue's wait for a lone account, and a model switch on a device.

Fair queue: one account queues 20 requests for the small SDXL (64x64, 4 steps) on
one device queue, then a second account sends one. Its wait (submitted to
started) is measured with the accounts taking turns, and again with both as one
account, which is what first-come first-served gives it.

Model switch: two models under a budget (``max_resident_models = 1``) on the
device; asking for the one that left measures bringing it back: from disk, and,
on a GPU, from CPU memory (the model parked there when it left). Run:

    python -m bench.bench_turns [--device cpu] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from bench.rows import Row, report
from genserve.inference.v1 import inference_pb2 as pb
from inference_server.fairness import Origin
from inference_server.model_config import DeviceSpec, ModelSpec, ModelTable
from inference_server.plans.image import plan_image
from inference_server.registry import ModelRegistry
from inference_server.scheduler import DeviceQueue

ROOT = Path(__file__).resolve().parent.parent


def _spec(name: str, device: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        kind="image",
        source="builtin:tiny-sdxl",
        device=device,
        width=64,
        height=64,
        steps=4,
        max_batch_size=1,
        warmup=False,
    )


def _ignore(stage: str, step: int, total: int, position: int) -> None:
    pass


async def lone_wait(registry: ModelRegistry, spec: ModelSpec, queued: int, fair: bool) -> float:
    """Seconds the second account's one request waited behind ``queued`` of the first's."""
    queue = DeviceQueue(spec.device, maxsize=queued + 4)
    queue.start()
    first, second = Origin("one", "free", 0), Origin("two" if fair else "one", "free", 0)

    def submit(origin: Origin, seed: int) -> Any:
        request = pb.GenerateImageRequest(prompt="a kite", seed=seed, num_images=1)
        plan = plan_image(spec, request)
        return queue.submit(plan.work(registry), _ignore, payload=plan, origin=origin)

    jobs = [submit(first, i) for i in range(queued)]
    sent = time.perf_counter()
    lone = submit(second, 99)
    await lone.future
    waited = (lone.started_at or sent) - sent
    for job in jobs:
        queue.withdraw(job)
    await asyncio.gather(*(job.future for job in jobs), return_exceptions=True)
    await queue.stop()
    return waited


def switch_seconds(registry: ModelRegistry, a: ModelSpec, b: ModelSpec) -> dict[str, float]:
    """Bringing ``a`` back after ``b`` took its place: seconds by where it came from."""
    seen: dict[str, float] = {}
    budget = registry.budgets[a.device]
    budget.on_load = lambda model, source, seconds: seen.__setitem__(source, seconds)
    registry.pipeline(a)
    registry.pipeline(b)  # a leaves: to CPU memory from a GPU, unloaded on a CPU
    seen.clear()
    registry.pipeline(a)
    if "cpu" in seen:  # and once more from disk: drop the parked copy first
        registry.pipeline(b)
        resident = budget.resident(a.name)
        resident.pipe, resident.state = None, "unloaded"
        registry.pipeline(a)
    return seen


async def measure(device: str, cache: Path, queued: int) -> list[Row]:
    a, b = _spec("turn-a", device), _spec("turn-b", device)
    table = ModelTable(models=[a, b], devices={device: DeviceSpec(max_resident_models=1)})
    registry = ModelRegistry(table, cache, queue_size=queued + 4)
    registry.pipeline(a)
    fair = await lone_wait(registry, a, queued, fair=True)
    fifo = await lone_wait(registry, a, queued, fair=False)
    section = f"taking turns · {device} · tiny-sdxl 64x64, 4 steps"
    switched = switch_seconds(registry, a, b)
    from_cpu = switched.get("cpu")
    return [
        Row(section, f"lone account's wait, another has {queued} queued", fair, "s",
            note="accounts take turns"),
        Row(section, "the same wait, first come first served", fifo, "s",
            note="both requests' account the same"),
        Row(section, "model switch: back from disk", switched.get("disk"), "s",
            note="evicted for another model, loaded again"),
        Row(section, "model switch: back from CPU memory", from_cpu, "s",
            note="a copy to the GPU" if from_cpu is not None else "GPU only: on a CPU it unloads"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    parser.add_argument("--cache", type=Path, default=ROOT / "data" / "models")
    parser.add_argument("--queued", type=int, default=20)
    parser.add_argument("--rows", action="store_true", help="rows as JSON lines (bench.run_all)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 4 queued")
    args = parser.parse_args()
    if args.quick:
        args.queued = 4
    rows = asyncio.run(measure(args.device, args.cache, args.queued))
    report(rows, args.rows, "taking turns")


if __name__ == "__main__":
    main()
