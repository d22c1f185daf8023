"""Public model names, their loaded pipelines, and the device queue and budget of each."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from pathlib import Path
from typing import Any

from genserve.vocabulary import Kind
from inference_server.errors import ModelNotFound
from inference_server.footprint import estimate_bytes
from inference_server.loader import load_pipeline
from inference_server.model_config import ModelSpec, ModelTable
from inference_server.progress import StepCallback
from inference_server.residency import MB, DeviceBudget, State
from inference_server.scheduler import DeviceQueue, current_device
from inference_server.speed import placement
from inference_server.warmup import wants_warmup, warm_up

log = logging.getLogger(__name__)

_LOADING = threading.Lock()
"""One load at a time in the process: ``from_pretrained`` builds modules on the meta device
through global state, which two device threads loading at once corrupt for each other."""


def replica_devices(spec: ModelSpec) -> list[str]:
    """The devices a model runs on: ``devices`` (``auto``: every CUDA device, else the CPU),
    or ``device`` alone."""
    if not spec.devices:
        return [spec.device]
    if spec.devices == ["auto"]:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{i}" for i in range(count)] or ["cpu"]
    return list(dict.fromkeys(spec.devices))


class ModelRegistry:
    """Loads pipelines lazily, always on their device's own thread, and warms them up.

    ``compile_cache_dir``: where compiled code is kept between starts (unset:
    inside ``cache_dir``).
    """

    def __init__(
        self,
        table: ModelTable,
        cache_dir: Path,
        queue_size: int,
        compile_cache_dir: Path | None = None,
    ) -> None:
        self.table = table
        self.cache_dir = cache_dir
        self.compile_cache_dir = compile_cache_dir
        self.queues: dict[str, DeviceQueue] = {}
        self.budgets: dict[str, DeviceBudget] = {}
        """Each device's models and the room they take (keyed like ``queues``)."""
        self.replicas: dict[str, list[str]] = {}
        """Each model's devices: one replica and one queue on each."""
        for spec in table.models:
            self.replicas[spec.name] = replica_devices(spec)
            for device in self.replicas[spec.name]:
                if device not in self.queues:
                    self.queues[device] = DeviceQueue(device, queue_size)
                    room = table.devices.get(device)
                    budget_mb = room.memory_budget_mb if room is not None else None
                    self.budgets[device] = DeviceBudget(
                        placement(spec.model_copy(update={"device": device})),
                        int(budget_mb * MB) if budget_mb is not None else None,
                        room.max_resident_models if room is not None else None,
                    )
                resident = self.budgets[device].resident(spec.name)
                resident.pinned, resident.idle_unload_s = spec.pin, spec.idle_unload_s
        self._sweeper: asyncio.Task[None] | None = None

    def spec(self, name: str, kind: Kind) -> ModelSpec:
        spec = self.table.get(name, kind) if name else self.table.default(kind)
        if spec is None:
            known = ", ".join(self.table.names(kind)) or "none"
            raise ModelNotFound(f"no {kind} model named {name!r} (served: {known})")
        return spec

    def queue_for(self, spec: ModelSpec) -> DeviceQueue:
        """The queue of the model's replica with the least waiting (warm ones first on ties)."""
        devices = self.replicas[spec.name]
        if len(devices) == 1:
            return self.queues[devices[0]]

        def waiting(device: str) -> tuple[int, bool]:
            queue = self.queues[device]
            load = queue.depth + (1 if queue.running is not None else 0)
            return load, self.budgets[device].resident(spec.name).state != "device"

        return self.queues[min(devices, key=waiting)]

    def replica_queues(self, spec: ModelSpec) -> list[DeviceQueue]:
        return [self.queues[device] for device in self.replicas[spec.name]]

    def _device(self, spec: ModelSpec) -> str:
        """The replica this thread serves: its device queue's, else the model's first."""
        devices = self.replicas[spec.name]
        here = current_device()
        return here if here in devices else devices[0]

    def state(self, spec: ModelSpec) -> State:
        """Where the model's weights are: on a device, parked in CPU memory, or not loaded
        (the best of its replicas)."""
        states = {self.budgets[d].resident(spec.name).state for d in self.replicas[spec.name]}
        return next(s for s in ("device", "cpu", "unloaded") if s in states)  # type: ignore[return-value]

    def is_loaded(self, spec: ModelSpec) -> bool:
        return self.state(spec) == "device"

    def step_cache(self, spec: ModelSpec) -> str:
        """The step cache fast requests get: the entry's, unless loading found it cannot apply."""
        if spec.step_cache is None:
            return ""
        pipe = self.budgets[self._device(spec)].resident(spec.name).pipe
        if pipe is not None and getattr(pipe, "genserve_step_cache", None) is None:
            return ""
        return spec.cache

    def pipeline(self, spec: ModelSpec, on_step: StepCallback | None = None) -> Any:
        """The pipeline on its device, loaded or brought back (others making room if need be);
        call only on the spec's device thread. ``on_step`` hears the ``loading`` stage."""

        device = self._device(spec)
        replica = spec if device == spec.device else spec.model_copy(update={"device": device})

        def load() -> Any:
            log.info("loading %s from %s onto %s", spec.name, spec.source, device)
            with _LOADING:
                pipe = load_pipeline(replica, self.cache_dir, self.compile_cache_dir)
            if pipe is not None and wants_warmup(replica):
                warm_up(pipe, replica)
            return pipe

        def loading() -> None:
            if on_step is not None:
                on_step(0, 1, "loading")

        def estimate() -> int | None:
            with _LOADING:  # a built-in model is built here the first time
                return estimate_bytes(replica, self.cache_dir)

        return self.budgets[device].acquire(spec.name, load, loading, estimate)

    def start(self) -> None:
        for queue in self.queues.values():
            queue.start()
        idle = [s.idle_unload_s for s in self.table.models if s.idle_unload_s is not None]
        if idle:
            period = max(0.2, min(idle) / 4)
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep(period), name="idle-unload"
            )

    async def _sweep(self, period: float) -> None:
        """Lets go of idle models, on each device's own thread between its work."""
        while True:
            await asyncio.sleep(period)
            for device, queue in self.queues.items():
                if queue.running is None and not queue.depth:
                    await queue.call(self.budgets[device].unload_idle)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for queue in self.queues.values():
            await queue.stop()
