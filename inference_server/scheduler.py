"""One bounded queue and one worker thread per device.

Every piece of work for a device runs on that device's single thread, so two
pipelines never compete for one GPU's memory; a full queue refuses new work at
once instead of letting memory run out. (Merging compatible requests into batches
is a later step; the queue is where it will happen.)
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inference_server.errors import GenerationCancelled, OutOfDeviceMemory, QueueFull
from inference_server.progress import StepCallback

log = logging.getLogger(__name__)

ProgressSink = Callable[[str, int, int, int], None]  # stage, step, total, queue position
Work = Callable[[StepCallback], Any]
DepthSink = Callable[[int], None]


@dataclass(eq=False)
class QueuedWork:
    """One submitted piece of device work: its outcome, cancel flag and start time.

    ``future`` resolves on the event loop with what ``work`` returned (or
    raised); ``started_at`` is set on the device thread when it begins. The work
    runs in ``context``, the submitter's (its request id reaches the device's logs).
    """

    work: Work
    on_progress: ProgressSink
    future: asyncio.Future[Any]
    cancelled: threading.Event = field(default_factory=threading.Event)
    started_at: float | None = None
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    position: int | None = None

    def cancel(self) -> None:
        self.cancelled.set()

    def announce(self, position: int) -> None:
        """Tells the submitter its place in the queue (0: nothing ahead)."""
        self.position = position
        self.on_progress("queued", 0, 0, position)


def mark_retrieved(future: asyncio.Future[Any]) -> None:
    """Marks the outcome as seen: nobody is left to read it, and that is expected."""
    if not future.cancelled():
        future.exception()


class DeviceQueue:
    """Runs work for one device in arrival order, at most ``maxsize`` waiting."""

    def __init__(self, device: str, maxsize: int) -> None:
        self.device = device
        self.maxsize = maxsize
        self._pending: collections.deque[QueuedWork] = collections.deque()
        self._wakeup = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix=f"device-{device}",
            initializer=_set_torch_threads,
            initargs=(_torch_threads(),),
        )
        self._worker: asyncio.Task[None] | None = None
        self.running: QueuedWork | None = None
        self.on_depth: DepthSink | None = None
        """Told the number waiting whenever it changes (the queue-depth gauge)."""

    def _depth_changed(self) -> None:
        if self.on_depth is not None:
            self.on_depth(len(self._pending))

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(
            self._run(), name=f"queue-{self.device}"
        )

    async def stop(self) -> None:
        for queued in list(self._pending):
            self.withdraw(queued)
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True, cancel_futures=True)

    @property
    def depth(self) -> int:
        return len(self._pending)

    def submit(self, work: Work, on_progress: ProgressSink) -> QueuedWork:
        if len(self._pending) >= self.maxsize:
            raise QueueFull(f"the queue for {self.device} is full ({self.maxsize} waiting)")
        queued = QueuedWork(
            work=work, on_progress=on_progress, future=asyncio.get_running_loop().create_future()
        )
        self._pending.append(queued)
        self._depth_changed()
        queued.announce(len(self._pending) - 1 + (1 if self.running else 0))
        self._wakeup.set()
        return queued

    def withdraw(self, queued: QueuedWork) -> None:
        """Cancels ``queued``: dropped if still waiting, stopped at its next step if running.

        Its caller has stopped listening, so the outcome (a ``GenerationCancelled``,
        a deadline's, or a result) is marked as retrieved whenever it comes, instead
        of being reported as "never retrieved" when the future is collected.
        """
        queued.cancel()
        queued.future.add_done_callback(mark_retrieved)
        if queued in self._pending:
            self._pending.remove(queued)
            self._depth_changed()
            if not queued.future.done():
                queued.future.set_exception(GenerationCancelled("cancelled while queued"))
            self._announce_positions()

    def _announce_positions(self) -> None:
        for position, queued in enumerate(self._pending):
            queued.announce(position + (1 if self.running else 0))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            queued = self._pending.popleft()
            self.running = queued
            self._depth_changed()
            if queued.position != 0:
                queued.announce(0)  # it leaves the queue: the stage that follows starts now
            self._announce_positions()
            try:
                result = await loop.run_in_executor(
                    self._executor, queued.context.run, self._execute, queued, loop
                )
            except BaseException as exc:  # delivered to the waiting RPC, never lost
                if not queued.future.done():
                    queued.future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            else:
                if not queued.future.done():
                    queued.future.set_result(result)
            finally:
                self.running = None

    def _execute(self, queued: QueuedWork, loop: asyncio.AbstractEventLoop) -> Any:
        if queued.cancelled.is_set():
            raise GenerationCancelled("cancelled before it started")
        queued.started_at = time.perf_counter()

        def on_step(step: int, total: int, stage: str) -> None:
            if queued.cancelled.is_set():
                raise GenerationCancelled(f"cancelled at {stage} step {step}")
            loop.call_soon_threadsafe(queued.on_progress, stage, step, total, 0)

        try:
            return queued.work(on_step)
        except Exception as exc:
            if _is_out_of_memory(exc):
                _free_device_memory()
                raise OutOfDeviceMemory(f"out of memory on {self.device}") from exc
            raise


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _set_torch_threads(threads: int) -> None:
    """Gives the device thread the intra-op thread count the main thread has.

    PyTorch sets its OpenMP thread count for the thread that initialised it;
    another thread falls back to OpenMP's own default, and the two teams
    fight for the cores: a 4-step 128x128 image took 86 ms instead of 54 ms
    on a 2-core machine before this.
    """
    import torch

    torch.set_num_threads(threads)


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _free_device_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
