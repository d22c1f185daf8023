"""Public model names, their loaded pipelines, and the device queue of each."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from genserve.vocabulary import Kind
from inference_server.errors import ModelNotFound
from inference_server.loader import load_pipeline
from inference_server.model_config import ModelSpec, ModelTable
from inference_server.scheduler import DeviceQueue
from inference_server.warmup import wants_warmup, warm_up

log = logging.getLogger(__name__)


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
        self._pipelines: dict[str, Any] = {}
        self.queues: dict[str, DeviceQueue] = {}
        for spec in table.models:
            if spec.device not in self.queues:
                self.queues[spec.device] = DeviceQueue(spec.device, queue_size)

    def spec(self, name: str, kind: Kind) -> ModelSpec:
        spec = self.table.get(name, kind) if name else self.table.default(kind)
        if spec is None:
            known = ", ".join(self.table.names(kind)) or "none"
            raise ModelNotFound(f"no {kind} model named {name!r} (served: {known})")
        return spec

    def queue_for(self, spec: ModelSpec) -> DeviceQueue:
        return self.queues[spec.device]

    def is_loaded(self, spec: ModelSpec) -> bool:
        return spec.name in self._pipelines

    def step_cache(self, spec: ModelSpec) -> str:
        """The step cache fast requests get: the entry's, unless loading found it cannot apply."""
        if spec.step_cache is None:
            return ""
        pipe = self._pipelines.get(spec.name)
        if pipe is not None and getattr(pipe, "genserve_step_cache", None) is None:
            return ""
        return spec.cache

    def pipeline(self, spec: ModelSpec) -> Any:
        """The loaded (and warmed-up) pipeline; call only on the spec's device thread."""
        if spec.name not in self._pipelines:
            log.info("loading %s from %s", spec.name, spec.source)
            pipe = load_pipeline(spec, self.cache_dir, self.compile_cache_dir)
            if pipe is not None and wants_warmup(spec):
                warm_up(pipe, spec)
            self._pipelines[spec.name] = pipe
        return self._pipelines[spec.name]

    def start(self) -> None:
        for queue in self.queues.values():
            queue.start()

    async def stop(self) -> None:
        for queue in self.queues.values():
            await queue.stop()
