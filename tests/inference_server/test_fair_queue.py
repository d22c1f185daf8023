"""The fair queue: plan priority first, then accounts in turn; positions that tell the truth.

The order itself (``FairQueue``), the device queue running work in it with the
positions it announced, and a real server taking the account and plan from
each request's metadata: a second account's lone request finishes while most
of the first account's queued work still waits.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from genserve import vocabulary as vocab
from genserve.inference.v1 import inference_pb2 as pb
from genserve.inference.v1 import inference_pb2_grpc as pb_grpc
from inference_server.fairness import INTERNAL_ACCOUNT, FairQueue, Origin, Policy
from inference_server.progress import StepCallback
from inference_server.scheduler import DeviceQueue
from tests.utils.procs import start_inference

POLICY = Policy()
FREE_A = POLICY.origin({vocab.ACCOUNT_METADATA: "a", vocab.PLAN_METADATA: "free"})
FREE_B = POLICY.origin({vocab.ACCOUNT_METADATA: "b", vocab.PLAN_METADATA: "free"})
PRO_C = POLICY.origin({vocab.ACCOUNT_METADATA: "c", vocab.PLAN_METADATA: "pro"})
PRO_D = POLICY.origin({vocab.ACCOUNT_METADATA: "d", vocab.PLAN_METADATA: "pro"})


@dataclass(eq=False)
class Item:
    name: str
    origin: Origin = field(default_factory=Origin)


def test_plans_go_first_then_accounts_take_turns() -> None:
    queue: FairQueue[Item] = FairQueue()
    for i in range(4):
        queue.append(Item(f"a{i}", FREE_A))
    queue.append(Item("b0", FREE_B))
    queue.append(Item("c0", PRO_C))
    queue.append(Item("c1", PRO_C))
    queue.append(Item("d0", PRO_D))
    planned = [item.name for item in queue]
    assert planned == ["c0", "d0", "c1", "a0", "b0", "a1", "a2", "a3"]
    popped = [queue.popleft().name for _ in range(len(queue))]
    assert popped == planned  # what it announces is what it does
    assert not queue


def test_a_returning_account_joins_the_back_of_the_turn() -> None:
    queue: FairQueue[Item] = FairQueue()
    a0, a1 = Item("a0", FREE_A), Item("a1", FREE_A)
    queue.append(a0)
    assert queue.popleft() is a0  # account a has nothing left waiting: out of the turn
    b = [Item(f"b{i}", FREE_B) for i in range(3)]
    for item in b:
        queue.append(item)
    queue.append(a1)
    assert [item.name for item in queue] == ["b0", "a1", "b1", "b2"]
    queue.remove(b[1])
    assert b[1] not in queue and a1 in queue
    assert [queue.popleft().name for _ in range(len(queue))] == ["b0", "a1", "b2"]


def test_metadata_names_the_origin_and_a_caller_without_it_gets_the_default() -> None:
    assert FREE_A == Origin(account="a", plan="free", priority=0)
    assert PRO_C.priority > FREE_A.priority
    ent = POLICY.origin({vocab.ACCOUNT_METADATA: "e", vocab.PLAN_METADATA: "Enterprise"})
    assert ent.priority > PRO_C.priority
    assert POLICY.origin({}) == Origin(account=INTERNAL_ACCOUNT, plan="free", priority=0)
    unknown = POLICY.origin({vocab.ACCOUNT_METADATA: "x", vocab.PLAN_METADATA: "platinum"})
    assert unknown.plan == "free"
    custom = Policy({"gold": 5, "tin": 1}, default_plan="gold")
    assert custom.origin({}).priority == 5


def _steps(count: int, log: list[str], name: str, pause_s: float = 0.005) -> Callable[..., str]:
    def work(on_step: StepCallback) -> str:
        log.append(name)
        for step in range(1, count + 1):
            time.sleep(pause_s)
            on_step(step, count, "denoising")
        return name

    return work


async def test_the_device_queue_runs_in_fair_order_at_the_positions_it_announced() -> None:
    """Two accounts on free, two on pro: the announced positions are the order work runs in."""
    queue = DeviceQueue("cpu", maxsize=32)
    queue.start()
    ran: list[str] = []
    positions: dict[str, list[int]] = {}

    def submit(name: str, origin: Origin, steps: int = 2) -> asyncio.Future[object]:
        positions[name] = []

        def on_progress(stage: str, step: int, total: int, position: int) -> None:
            if stage == "queued":
                positions[name].append(position)

        return queue.submit(_steps(steps, ran, name), on_progress, origin=origin).future

    blocker = submit("blocker", FREE_A, steps=40)
    while queue.running is None:
        await asyncio.sleep(0.005)
    futures = [blocker]
    futures += [submit(f"a{i}", FREE_A) for i in range(5)]
    futures.append(submit("b0", FREE_B))
    futures += [submit(f"c{i}", PRO_C) for i in range(2)]
    futures.append(submit("d0", PRO_D))
    # What each was told last while the blocker ran: its place behind the running one.
    told = {name: seen[-1] for name, seen in positions.items() if name != "blocker"}
    await asyncio.gather(*futures)
    assert ran == ["blocker", "c0", "d0", "c1", "a0", "b0", "a1", "a2", "a3", "a4"]
    for index, name in enumerate(ran[1:], start=1):
        assert told[name] == index, (name, told)
        assert positions[name][-1] == 0  # told it leaves the queue as it starts
    await queue.stop()


def _request(i: int) -> pb.GenerateImageRequest:
    return pb.GenerateImageRequest(prompt=f"prompt {i}", steps=12, seed=i, num_images=1)


@pytest.mark.server
def test_a_lone_request_from_another_account_passes_a_queue_of_one_accounts_work(
    model_cache: Path, logs: Path, tmp_path: Path
) -> None:
    """Over gRPC with the metadata the bridge sends: account 1 queues eight requests, then
    (once the server holds all eight) account 2 sends one; it finishes while most of
    account 1's work is still waiting."""
    models = tmp_path / "models.toml"
    models.write_text(
        '[models.nano-banana]\nkind = "image"\nsource = "builtin:tiny-sdxl"\n'
        "width = 64\nheight = 64\nsteps = 12\nmax_batch_size = 1\n"
    )
    proc, port, _ = start_inference(model_cache, logs, models_file=models)
    try:
        stub = pb_grpc.InferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        done: list[str] = []
        lock = threading.Lock()

        queued = threading.Semaphore(0)

        def call(name: str, account: str, plan: str, i: int) -> None:
            metadata = ((vocab.ACCOUNT_METADATA, account), (vocab.PLAN_METADATA, plan))
            events = []
            for event in stub.GenerateImage(_request(i), metadata=metadata, timeout=120):
                if not events:
                    queued.release()  # the server holds it: its first event is sent
                events.append(event)
            assert events[-1].WhichOneof("event") == "completion"
            with lock:
                done.append(name)

        first = [threading.Thread(target=call, args=(f"one-{i}", "1", "free", i)) for i in range(8)]
        for thread in first:
            thread.start()
        for _ in first:  # every one of account 1's eight is in the queue before account 2's
            assert queued.acquire(timeout=60)
        with lock:
            finished_first = len(done)
        lone = threading.Thread(target=call, args=("two", "2", "free", 99))
        lone.start()
        lone.join(120)
        with lock:
            finished_before = [name for name in done if name != "two"]
        for thread in first:
            thread.join(120)
        assert "two" in done
        assert len(done) == 9
        # Most of account 1's work still waits: what had finished when account 2 came, the
        # one running then, and the one whose turn comes first in the round (1 then 2).
        assert len(finished_before) <= finished_first + 2, done
        assert len(finished_before) <= 4, done
    finally:
        proc.stop()


def test_the_bridge_names_the_account_and_plan_in_the_metadata() -> None:
    from rest_bridge.link.channels import request_metadata

    request = pb.GenerateImageRequest(prompt="p", request_id="req-1")
    metadata = dict(request_metadata(request, (42, "pro")) or ())
    assert metadata == {
        "x-request-id": "req-1",
        vocab.ACCOUNT_METADATA: "42",
        vocab.PLAN_METADATA: "pro",
    }
    assert POLICY.origin(metadata) == Origin(account="42", plan="pro", priority=1)
