"""Models that take turns on a device: a memory budget, LRU eviction, pinning, idle unload.

Each device has a budget (``[devices."cuda:0"]`` in the models file:
``memory_budget_mb`` and, as a simple cap, ``max_resident_models``; by default
90% of a GPU's memory, or of the host's for ``cpu``). A model's footprint is
estimated before it first loads, from its weight files (``footprint``), and
measured once loaded: the bytes of every parameter and buffer of its
components. When a model must come onto the device and does not fit, the least
recently used other models leave: to CPU memory where the model lives on a GPU
and the host has room (so coming back is a copy, not a load), otherwise
unloaded. A pinned model never leaves; a model unused for its ``idle_unload_s``
is let go. A model that cannot fit even alone is refused with a clear error.

Everything here runs on the device's own thread (the device queue's), so no
model is moved while it runs.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from inference_server.errors import ModelLoadError

log = logging.getLogger(__name__)

State = Literal["device", "cpu", "unloaded"]
MB = 1024 * 1024
HOST_HEADROOM = 0.8
"""The share of the host's available memory models parked in CPU memory may use."""


class ModelTooLarge(ModelLoadError):
    """The model does not fit its device's budget even with every other model gone."""


def footprint_bytes(pipe: Any) -> int:
    """Bytes of every parameter and buffer of the pipeline's torch components."""
    import torch

    total = 0
    components = getattr(pipe, "components", None) or {}
    extra = getattr(pipe, "genserve_preview_decoder", None)
    for module in [*components.values(), extra]:
        if isinstance(module, torch.nn.Module):
            for tensor in [*module.parameters(), *module.buffers()]:
                total += tensor.numel() * tensor.element_size()
    return total


def default_budget_bytes(device: str) -> int:
    """Most of what the device has: 90% of a GPU's memory, of the host's RAM for ``cpu``."""
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            index = torch.device(device).index or 0
            return int(torch.cuda.get_device_properties(index).total_memory * 0.9)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.9)


def host_available_bytes() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class Resident:
    """One model's place: where its weights are, how big, when last used."""

    name: str
    pipe: Any = None
    state: State = "unloaded"
    bytes: int = 0
    last_used: float = field(default_factory=time.monotonic)
    pinned: bool = False
    idle_unload_s: float | None = None


LoadSink = Callable[[str, str, float], None]  # model, from ("disk" or "cpu"), seconds
EvictSink = Callable[[str, str], None]  # model, to ("cpu" or "unloaded")


class DeviceBudget:
    """The models of one device and the room they take; used on the device's thread only."""

    def __init__(
        self, device: str, budget_bytes: int | None = None, max_resident: int | None = None
    ) -> None:
        self.device = device
        self.budget_bytes = (
            budget_bytes if budget_bytes is not None else default_budget_bytes(device)
        )
        self.max_resident = max_resident
        self.models: dict[str, Resident] = {}
        self.on_load: LoadSink | None = None
        self.on_evict: EvictSink | None = None

    def resident(self, name: str) -> Resident:
        return self.models.setdefault(name, Resident(name))

    def used_bytes(self, but: str = "") -> int:
        return sum(r.bytes for r in self.models.values() if r.state == "device" and r.name != but)

    def on_device(self, but: str = "") -> list[Resident]:
        """Models with weights on the device (a weightless one, such as relief, takes no room)."""
        return [
            r
            for r in self.models.values()
            if r.state == "device" and r.name != but and r.pipe is not None
        ]

    def acquire(
        self,
        name: str,
        load: Callable[[], Any],
        notify: Callable[[], None],
        estimate: Callable[[], int | None] | None = None,
    ) -> Any:
        """The model's pipeline on the device: loaded or brought back, others making room.

        ``load`` reads it from disk onto the device; ``notify`` is called first
        whenever the model is not already there (the ``loading`` stage);
        ``estimate`` tells the bytes a first load will take (from the weight
        files), so the room is made before it, not after.
        """
        model = self.resident(name)
        model.last_used = time.monotonic()
        if model.state == "device":
            return model.pipe
        notify()
        started = time.perf_counter()
        if model.state == "cpu":
            self._make_room(model, model.bytes)
            model.pipe.to(self.device)
            model.state = "device"
            self._loaded(model, "cpu", started)
            return model.pipe
        # Room first, so the load cannot overshoot the budget: for the footprint measured at
        # an earlier load, else for the estimate from the weight files.
        need = model.bytes or (estimate() if estimate is not None else None) or 0
        if need and not model.bytes:
            if need > self.budget_bytes:
                raise ModelTooLarge(
                    f"{name} needs {need / MB:.1f} MB on {self.device}, more than the device's "
                    f"memory budget of {self.budget_bytes / MB:.1f} MB (estimated from its "
                    "weight files, before loading)"
                )
            log.info(
                "%s needs about %.1f MB on %s (its weight files): making room before loading",
                name,
                need / MB,
                self.device,
            )
        if need:
            self._make_room(model, need)
        try:
            pipe = load()
        except Exception as exc:
            if not _out_of_memory(exc) or not self.on_device(but=name):
                raise
            log.warning("out of memory loading %s on %s: making room, once", name, self.device)
            self._make_room(model, self.budget_bytes)  # everything that may leave, leaves
            pipe = load()
        model.pipe, model.bytes, model.state = pipe, footprint_bytes(pipe), "device"
        if model.bytes > self.budget_bytes:
            self._drop(model)
            raise ModelTooLarge(
                f"{name} needs {model.bytes / MB:.1f} MB on {self.device}, more than the "
                f"device's memory budget of {self.budget_bytes / MB:.1f} MB"
            )
        self._make_room(model, model.bytes)
        self._loaded(model, "disk", started)
        return pipe

    def _loaded(self, model: Resident, source: str, started: float) -> None:
        seconds = time.perf_counter() - started
        log.info(
            "%s on %s from %s in %.2f s (%.1f MB; %.1f of %.1f MB used)",
            model.name,
            self.device,
            source,
            seconds,
            model.bytes / MB,
            self.used_bytes() / MB,
            self.budget_bytes / MB,
        )
        if self.on_load is not None:
            self.on_load(model.name, source, seconds)

    def _fits(self, model: Resident, need: int) -> bool:
        others = self.on_device(but=model.name)
        if self.max_resident is not None and len(others) + 1 > self.max_resident:
            return False
        return self.used_bytes(but=model.name) + need <= self.budget_bytes

    def _make_room(self, model: Resident, need: int) -> None:
        """Least recently used unpinned models leave until ``need`` more bytes fit."""
        while not self._fits(model, need):
            idle = sorted(
                (r for r in self.on_device(but=model.name) if not r.pinned),
                key=lambda r: r.last_used,
            )
            if not idle:
                pinned = ", ".join(r.name for r in self.on_device(but=model.name)) or "none"
                raise ModelTooLarge(
                    f"{model.name} needs {need / MB:.1f} MB on {self.device}, and the models "
                    f"that stay there (pinned: {pinned}) leave "
                    f"{(self.budget_bytes - self.used_bytes(but=model.name)) / MB:.1f} MB "
                    f"of its {self.budget_bytes / MB:.1f} MB budget"
                )
            self.evict(idle[0])

    def evict(self, model: Resident) -> None:
        """Off the device: to CPU memory when it lives on a GPU and the host has room."""
        parked = sum(r.bytes for r in self.models.values() if r.state == "cpu")
        room = host_available_bytes() * HOST_HEADROOM - parked
        if self.device != "cpu" and model.bytes <= room:
            model.pipe.to("cpu")
            model.state = "cpu"
            to = "cpu"
        else:
            self._drop(model)
            to = "unloaded"
        _free_device_memory()
        log.info("%s left %s (%s)", model.name, self.device, to)
        if self.on_evict is not None:
            self.on_evict(model.name, to)

    def _drop(self, model: Resident) -> None:
        model.pipe, model.state = None, "unloaded"
        gc.collect()

    def unload_idle(self, now: float | None = None) -> list[str]:
        """Lets go of every unpinned model unused for its ``idle_unload_s``; their names."""
        now = time.monotonic() if now is None else now
        gone = []
        for model in list(self.models.values()):
            if model.state == "unloaded" or model.pinned or model.idle_unload_s is None:
                continue
            if now - model.last_used >= model.idle_unload_s:
                self._drop(model)
                _free_device_memory()
                gone.append(model.name)
                log.info("%s let go after %.0f s idle", model.name, now - model.last_used)
                if self.on_evict is not None:
                    self.on_evict(model.name, "unloaded")
        return gone


def _out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _free_device_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
