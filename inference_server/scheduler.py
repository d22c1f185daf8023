"""One bounded queue and one worker thread per device, merging compatible work into batches.

Every piece of work for a device runs on that device's single thread, so two
pipelines never compete for one GPU's memory; a full queue refuses new work at
once instead of letting memory run out.

Work that says how it may share a call (its ``Batching``: a key, a limit, a
wait) is merged with the waiting work of the same key into one device call of
up to ``limit`` rows. Each member keeps its own progress, cancellation and
outcome (a ``Seat``): one that leaves is answered at once and the call goes on
for the others. A batch that runs out of device memory is split in halves that
are retried, so only work that would not fit alone fails.

A batch waits for company (at most its ``wait_s``) only when its first member
arrived while the device was busy: a lone client's requests never wait, and
under load the queue fills while the device works, so batches form by themselves.

Closed-loop clients split that rhythm: when a call ends, its clients send their
next requests at once, the first finds the device free and would run alone while
the rest queue behind it. So the queue remembers each key's recent demand (the
requests of its last call and those waiting when it ended, for
``DEMAND_MEMORY_S``): a call that would start with fewer requests waits up to its
``fill_s`` more for them, and starts as soon as they are there, or when other
work is waiting. A lone client's last call had one request and none waiting
(however many images it asked for): its requests never wait for company that is
not coming.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from inference_server.errors import GenerationCancelled, OutOfDeviceMemory, QueueFull
from inference_server.fairness import FairQueue, Origin
from inference_server.progress import StepCallback

log = logging.getLogger(__name__)

ProgressSink = Callable[[str, int, int, int], None]  # stage, step, total, queue position
Work = Callable[[StepCallback], Any]
DepthSink = Callable[[int], None]
BatchSink = Callable[[int], None]
FillSink = Callable[[str], None]

DEMAND_MEMORY_S = 1.0
"""How long a call's rows count as its key's recent demand after the call ends."""

FILLED = "filled"
"""A fill wait that ended with the rows of recent demand."""
TIMED_OUT = "timed_out"
"""A fill wait that ran its ``fill_s`` out without them (the call starts with fewer)."""
YIELDED = "yielded"
"""A fill wait cut short: other work was waiting for the device, or every member left."""


class Seat:
    """One member's place in a shared device call: its progress, its leaving.

    Made on the device thread; ``step`` never raises (a member's cancellation
    must not stop the others' call), the batch runner asks ``left`` instead and
    calls ``leave`` when it has dropped the member, which answers it at once.
    """

    def __init__(self, queued: QueuedWork, loop: asyncio.AbstractEventLoop) -> None:
        self.queued = queued
        self._loop = loop
        self.gone = False

    @property
    def payload(self) -> Any:
        """What the member's work carries (its plan)."""
        return self.queued.payload

    def left(self) -> bool:
        return self.gone or self.queued.cancelled.is_set()

    def step(self, step: int, total: int, stage: str) -> None:
        if not self.left():
            self._loop.call_soon_threadsafe(self.queued.on_progress, stage, step, total, 0)

    def leave(self, step: int) -> None:
        """The member left the call after ``step``: its caller hears so now, not at the end."""
        self.gone = True
        self._loop.call_soon_threadsafe(
            _settle, self.queued.future, GenerationCancelled(f"cancelled at denoising step {step}")
        )


BatchRun = Callable[[Sequence[Seat]], list[Any]]
"""Runs its seats' payloads in one device call; one outcome per seat, in order.

A seat that left may get anything (its caller was answered when it left). The
runner raises ``GenerationCancelled`` when every seat has left.
"""


@dataclass(frozen=True)
class Batching:
    """How one piece of work may share a device call with others like it."""

    key: Hashable
    """Work with equal keys can run in one call (the same model, size, steps, guidance...)."""
    size: int
    """The rows this work adds to a call (its number of images)."""
    limit: int
    """The most rows in one call: the model's ``max_batch_size``; 1 runs the work alone."""
    wait_s: float
    """The longest a call waits for company before it starts."""
    run: BatchRun
    fill_s: float = 0.0
    """The longest a call waits, besides ``wait_s``, for its key's recent demand (0: never)."""


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
    batching: Batching | None = None
    payload: Any = None
    arrived_busy: bool = False
    origin: Origin = field(default_factory=Origin)
    """Whose work it is: its account and plan priority place it in the queue's order."""

    def cancel(self) -> None:
        self.cancelled.set()

    def announce(self, position: int) -> None:
        """Tells the submitter its place in the queue (0: nothing ahead)."""
        self.position = position
        self.on_progress("queued", 0, 0, position)


def _all_left(members: Sequence[QueuedWork]) -> bool:
    return all(queued.cancelled.is_set() for queued in members)


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    """Resolves ``future`` with ``outcome`` (an exception is raised to its reader), once."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def mark_retrieved(future: asyncio.Future[Any]) -> None:
    """Marks the outcome as seen: nobody is left to read it, and that is expected."""
    if not future.cancelled():
        future.exception()


class DeviceQueue:
    """Runs work for one device in fair order (see ``fairness``), at most ``maxsize`` waiting.

    Work of one account and plan runs in arrival order; accounts of one plan
    priority take turns; a higher priority goes first.
    """

    def __init__(self, device: str, maxsize: int) -> None:
        self.device = device
        self.maxsize = maxsize
        self._pending: FairQueue[QueuedWork] = FairQueue()
        self._wakeup = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix=f"device-{device}",
            initializer=_start_device_thread,
            initargs=(device, _torch_threads()),
        )
        self._worker: asyncio.Task[None] | None = None
        self.running: QueuedWork | None = None
        """The work on the device (a batch's first member), None while idle."""
        self.on_depth: DepthSink | None = None
        """Told the number waiting whenever it changes (the queue-depth gauge)."""
        self.on_batch: BatchSink | None = None
        """Told the rows of every batched call as it starts (the batch-size histogram)."""
        self.on_fill: FillSink | None = None
        """Told how each wait for recent demand ended (``FILLED``, ``TIMED_OUT``, ``YIELDED``)."""
        self._demand: dict[Hashable, tuple[int, float]] = {}
        # batch key -> (its demand: requests of its last call and requests then waiting,
        # when that call ended in loop time)

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

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Runs ``fn`` on the device's thread, between two pieces of work (housekeeping)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    @property
    def depth(self) -> int:
        return len(self._pending)

    def submit(
        self,
        work: Work,
        on_progress: ProgressSink,
        batching: Batching | None = None,
        payload: Any = None,
        origin: Origin | None = None,
    ) -> QueuedWork:
        """Queues ``work``; with ``batching`` (limit above 1) it may run with others as a seat.

        ``origin`` places it in the fair order (none: the internal account at priority 0);
        work it goes ahead of hears its new place at once.

        ``work`` runs it alone (``batching.run`` with one seat would too, but the
        plain path is the one a model with ``max_batch_size = 1`` asks for).
        """
        if len(self._pending) >= self.maxsize:
            raise QueueFull(f"the queue for {self.device} is full ({self.maxsize} waiting)")
        queued = QueuedWork(
            work=work,
            on_progress=on_progress,
            future=asyncio.get_running_loop().create_future(),
            batching=batching if batching is not None and batching.limit > 1 else None,
            payload=payload,
            arrived_busy=self.running is not None or bool(self._pending),
            origin=origin if origin is not None else Origin(),
        )
        self._pending.append(queued)
        self._depth_changed()
        self._announce_positions()
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
        """Tells each waiting piece of work its place in the fair order, when it changed."""
        ahead = 1 if self.running else 0
        for position, queued in enumerate(self._pending, start=ahead):
            if queued.position != position:
                queued.announce(position)

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
                if queued.batching is None:
                    await self._run_alone(queued, loop)
                else:
                    await self._run_batch(await self._gather(queued, loop), loop)
            finally:
                self.running = None

    async def _run_alone(self, queued: QueuedWork, loop: asyncio.AbstractEventLoop) -> None:
        try:
            result = await loop.run_in_executor(
                self._executor, queued.context.run, self._execute, queued, loop
            )
        except BaseException as exc:  # delivered to the waiting RPC, never lost
            _settle(queued.future, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            _settle(queued.future, result)

    async def _gather(self, first: QueuedWork, loop: asyncio.AbstractEventLoop) -> list[QueuedWork]:
        """``first`` and the waiting work of its key, up to its limit in rows.

        Later work of the key goes ahead of earlier work of other keys: one call
        for all of it is the point. When ``first`` came to a busy device, the
        call waits up to ``wait_s`` for more of its kind to arrive; with fewer
        rows than its key's recent demand, up to ``fill_s`` for them, while no
        other work waits.
        """
        batching = first.batching
        assert batching is not None
        members = [first]
        rows = batching.size

        def take() -> None:
            nonlocal rows
            for queued in list(self._pending):
                other = queued.batching
                if other is None or other.key != batching.key:
                    continue
                if rows + other.size > batching.limit:
                    break
                self._pending.remove(queued)
                queued.announce(0)
                members.append(queued)
                rows += other.size
            self._depth_changed()

        take()
        now = loop.time()
        wait_until = now + batching.wait_s if first.arrived_busy else now
        target = min(self.recent_demand(batching.key, now), batching.limit)
        filling = len(members) < target and batching.fill_s > 0
        fill_until = now + batching.fill_s if filling else now

        def deadline() -> float:
            nonlocal filling
            if filling and (self._others_waiting(batching.key) or _all_left(members)):
                self._filled(YIELDED)
                filling = False
            return max(wait_until, fill_until) if filling else wait_until

        try:
            while rows < batching.limit and (remaining := deadline() - loop.time()) > 0:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
                take()
                if filling and len(members) >= target:
                    self._filled(FILLED)
                    filling = False
        except asyncio.CancelledError:  # the queue stops: out of the queue, so answer here
            for queued in members:
                _settle(queued.future, GenerationCancelled("the server is stopping"))
            raise
        if filling:
            self._filled(TIMED_OUT)
        if wait_until > now or fill_until > now:
            self._announce_positions()
        return members

    def recent_demand(self, key: Hashable, now: float) -> int:
        """``key``'s demand in requests when its last call ended, within ``DEMAND_MEMORY_S``;
        else 1. Requests, not images: one client asking for four images is still alone."""
        requests, ended = self._demand.get(key, (1, now))
        return requests if now - ended <= DEMAND_MEMORY_S else 1

    def _remember(self, key: Hashable, requests: int, now: float) -> None:
        """A call of ``key`` with ``requests`` ended: its demand is those and the requests
        waiting now.

        The waiting ones count because a call split in two (a lone first member, the
        rest queued behind it) would otherwise teach the queue the split's sizes.
        """
        for old in [k for k, (_, ended) in self._demand.items() if now - ended > DEMAND_MEMORY_S]:
            del self._demand[old]
        waiting = sum(1 for q in self._pending if q.batching is not None and q.batching.key == key)
        self._demand[key] = (requests + waiting, now)

    def _others_waiting(self, key: Hashable) -> bool:
        """Whether work that cannot join a call of ``key`` waits for the device."""
        return any(q.batching is None or q.batching.key != key for q in self._pending)

    def _filled(self, outcome: str) -> None:
        if self.on_fill is not None:
            self.on_fill(outcome)

    async def _run_batch(self, members: list[QueuedWork], loop: asyncio.AbstractEventLoop) -> None:
        rows = sum(m.batching.size for m in members if m.batching is not None)
        if self.on_batch is not None:
            self.on_batch(rows)
        try:
            outcomes = await loop.run_in_executor(
                self._executor, members[0].context.run, self._execute_batch, members, loop
            )
        except BaseException as exc:
            for queued in members:
                _settle(queued.future, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            for queued, outcome in zip(members, outcomes, strict=True):
                _settle(queued.future, outcome)
        finally:
            assert members[0].batching is not None
            self._remember(members[0].batching.key, len(members), loop.time())

    def _execute_batch(
        self, members: list[QueuedWork], loop: asyncio.AbstractEventLoop
    ) -> list[Any]:
        """Every member's outcome (a result or an exception), one call or several."""
        started = time.perf_counter()
        outcomes: dict[int, Any] = {}
        seats = []
        for i, queued in enumerate(members):
            if queued.cancelled.is_set():
                outcomes[i] = GenerationCancelled("cancelled before it started")
            else:
                queued.started_at = started
                seats.append((i, Seat(queued, loop)))
        if seats:
            batching = members[seats[0][0]].batching
            assert batching is not None
            done = self._split_on_oom(batching.run, [seat for _, seat in seats])
            for (i, _seat), outcome in zip(seats, done, strict=True):
                outcomes[i] = outcome
        return [outcomes[i] for i in range(len(members))]

    def _split_on_oom(self, run: BatchRun, seats: list[Seat]) -> list[Any]:
        """``run(seats)``; out of memory, the halves again, so only what cannot fit alone fails."""
        try:
            return run(seats)
        except Exception as exc:
            if not _is_out_of_memory(exc):
                return [exc] * len(seats)
            _free_device_memory()
            if len(seats) == 1:
                return [OutOfDeviceMemory(f"out of memory on {self.device}")]
            half = len(seats) // 2
            log.warning(
                "out of memory on %s with a batch of %d: retrying as %d and %d",
                self.device,
                len(seats),
                half,
                len(seats) - half,
            )
            return self._split_on_oom(run, seats[:half]) + self._split_on_oom(run, seats[half:])

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


_this_thread = threading.local()


def current_device() -> str | None:
    """The device whose queue runs on this thread (None off the device threads)."""
    return getattr(_this_thread, "device", None)


def _start_device_thread(device: str, threads: int) -> None:
    _this_thread.device = device
    _set_torch_threads(threads)
    log.info(
        "device thread for %s: %d intra-op threads",
        device,
        _torch_threads(),
        extra={"device": device, "device_threads": _torch_threads()},
    )


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
