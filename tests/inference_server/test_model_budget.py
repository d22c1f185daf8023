"""Models that take turns on a device: three small models under a budget that holds two.

The registry measures each model's footprint at load; the least recently used
model leaves for the one that needs room and comes back on its next request;
a pinned model never leaves; an idle one is let go; one bigger than the budget
is refused with a clear error. Over gRPC: every answer completes, the
``loading`` stage is streamed, ``ListModels`` reports each model's state, and
the metrics count loads and evictions.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import grpc
import httpx
import pytest

from genserve.inference.v1 import inference_pb2 as pb
from genserve.inference.v1 import inference_pb2_grpc as pb_grpc
from inference_server.loader import load_pipeline
from inference_server.model_config import DeviceSpec, ModelSpec, ModelTable, load_model_table
from inference_server.registry import ModelRegistry
from inference_server.residency import MB, ModelTooLarge, footprint_bytes
from tests.utils.procs import start_inference

NAMES = ("nano-a", "nano-b", "nano-c")


def _spec(name: str, **extra: object) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "name": name,
            "kind": "image",
            "source": "builtin:tiny-sdxl",
            "width": 64,
            "height": 64,
            "steps": 2,
            "warmup": False,
            **extra,
        }
    )


@pytest.fixture(scope="module")
def model_mb(model_cache: Path) -> float:
    """One small model's weights in MB, as the registry measures them."""
    return footprint_bytes(load_pipeline(_spec("probe"), model_cache)) / MB


def _registry(model_cache: Path, budget_mb: float, *specs: ModelSpec) -> ModelRegistry:
    table = ModelTable(models=list(specs), devices={"cpu": DeviceSpec(memory_budget_mb=budget_mb)})
    return ModelRegistry(table, model_cache, queue_size=4)


def _states(registry: ModelRegistry) -> dict[str, str]:
    return {spec.name: registry.state(spec) for spec in registry.table.models}


def test_the_least_recently_used_model_leaves_and_comes_back(
    model_cache: Path, model_mb: float
) -> None:
    specs = [_spec(name) for name in NAMES]
    registry = _registry(model_cache, 2.5 * model_mb, *specs)
    a, b, c = specs
    heard: list[str] = []
    registry.pipeline(a, lambda step, total, stage: heard.append(stage))
    registry.pipeline(b)
    assert _states(registry) == {"nano-a": "device", "nano-b": "device", "nano-c": "unloaded"}
    registry.pipeline(a)  # a is now the most recently used: b leaves for c
    registry.pipeline(c)
    assert _states(registry) == {"nano-a": "device", "nano-b": "unloaded", "nano-c": "device"}
    registry.pipeline(b)  # back, a leaves
    assert _states(registry) == {"nano-a": "unloaded", "nano-b": "device", "nano-c": "device"}
    assert heard == ["loading"]
    heard.clear()
    registry.pipeline(b, lambda step, total, stage: heard.append(stage))
    assert heard == []  # on the device already: no loading stage
    budget = registry.budgets["cpu"]
    assert budget.used_bytes() <= budget.budget_bytes


def test_room_is_made_before_a_first_load_not_after(
    model_cache: Path, model_mb: float, caplog: pytest.LogCaptureFixture
) -> None:
    """The third model's footprint is estimated from its weight files, so the least recently
    used model leaves before ``from_pretrained`` runs: the device never holds three."""
    specs = [_spec(name) for name in NAMES]
    registry = _registry(model_cache, 2.5 * model_mb, *specs)
    budget = registry.budgets["cpu"]
    seen: list[str] = []
    budget.on_evict = lambda model, to: seen.append(f"{model} left ({to})")
    budget.on_load = lambda model, source, seconds: seen.append(f"{model} loaded")
    a, b, c = specs
    registry.pipeline(a)
    registry.pipeline(b)
    with caplog.at_level(logging.INFO):
        registry.pipeline(c)
    said = [r.getMessage() for r in caplog.records]
    left = next(i for i, m in enumerate(said) if m.startswith("nano-a left cpu"))
    loading = next(i for i, m in enumerate(said) if m.startswith("loading nano-c"))
    assert left < loading, said
    assert any(m.startswith("nano-c needs about") for m in said[:left]), said
    assert seen == ["nano-a loaded", "nano-b loaded", "nano-a left (unloaded)", "nano-c loaded"]
    assert budget.used_bytes() <= budget.budget_bytes


def test_a_pinned_model_never_leaves(model_cache: Path, model_mb: float) -> None:
    a, b, c = _spec("nano-a", pin=True), _spec("nano-b"), _spec("nano-c")
    registry = _registry(model_cache, 2.5 * model_mb, a, b, c)
    registry.pipeline(a)
    for spec in (b, c, b, c):
        registry.pipeline(spec)
        assert registry.state(a) == "device"
    assert _states(registry) == {"nano-a": "device", "nano-b": "unloaded", "nano-c": "device"}


def test_max_resident_models_caps_the_device(model_cache: Path, model_mb: float) -> None:
    specs = [_spec(name) for name in NAMES]
    table = ModelTable(models=specs, devices={"cpu": DeviceSpec(max_resident_models=1)})
    registry = ModelRegistry(table, model_cache, queue_size=4)
    for spec in specs:
        registry.pipeline(spec)
        assert [s for s in _states(registry).values() if s == "device"] == ["device"]


def test_an_idle_model_is_let_go(model_cache: Path, model_mb: float) -> None:
    a, b = _spec("nano-a", idle_unload_s=30), _spec("nano-b")
    registry = _registry(model_cache, 10 * model_mb, a, b)
    registry.pipeline(a)
    registry.pipeline(b)
    budget = registry.budgets["cpu"]
    assert budget.unload_idle(now=time.monotonic() + 5) == []
    assert budget.unload_idle(now=time.monotonic() + 31) == ["nano-a"]  # b has no idle limit
    assert _states(registry) == {"nano-a": "unloaded", "nano-b": "device"}


def test_a_model_bigger_than_the_budget_is_refused_clearly(
    model_cache: Path, model_mb: float, caplog: pytest.LogCaptureFixture
) -> None:
    a, big = _spec("nano-a"), _spec("nano-big")
    registry = _registry(model_cache, 0.5 * model_mb, a, big)
    loads: list[str] = []
    registry.budgets["cpu"].on_load = lambda model, source, seconds: loads.append(model)
    with (
        caplog.at_level(logging.INFO),
        pytest.raises(ModelTooLarge, match=r"nano-big needs [\d.]+ MB on cpu, more than.*before"),
    ):
        registry.pipeline(big)  # refused on the estimate from its weight files: never loaded
    assert "loading nano-big" not in caplog.text and loads == []
    assert registry.state(big) == "unloaded"
    pinned = _registry(model_cache, 1.5 * model_mb, _spec("nano-a", pin=True), big)
    pinned.pipeline(pinned.table.models[0])
    with pytest.raises(ModelTooLarge, match="pinned: nano-a"):
        pinned.pipeline(big)
    assert pinned.state(pinned.table.models[0]) == "device"


def test_the_models_file_reads_device_tables(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        '[devices."cuda:0"]\nmemory_budget_mb = 70000\nmax_resident_models = 3\n\n'
        '[models.x]\nkind = "image"\nsource = "builtin:tiny-sdxl"\npin = true\n'
        "idle_unload_s = 600\n"
    )
    table = load_model_table(path)
    assert table.devices["cuda:0"] == DeviceSpec(memory_budget_mb=70000, max_resident_models=3)
    assert table.models[0].pin and table.models[0].idle_unload_s == 600


def _sample(metrics: str, name: str) -> float:
    pattern = re.compile(rf"^{name}(\{{[^}}]*\}})? (\S+)$")
    return sum(float(m.group(2)) for line in metrics.splitlines() if (m := pattern.match(line)))


@pytest.mark.server
def test_a_server_with_three_models_and_room_for_two_answers_every_request(
    model_cache: Path, logs: Path, tmp_path: Path, model_mb: float
) -> None:
    entries = "".join(
        f'[models.{name}]\nkind = "image"\nsource = "builtin:tiny-sdxl"\nwidth = 64\n'
        f"height = 64\nsteps = 2\npreload = false\n\n"
        for name in NAMES
    )
    models = tmp_path / "models.toml"
    models.write_text(f"[devices.cpu]\nmemory_budget_mb = {2.5 * model_mb:.3f}\n\n" + entries)
    proc, port, metrics_port = start_inference(model_cache, logs, models_file=models)
    try:
        stub = pb_grpc.InferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))

        def generate(name: str) -> list[int]:
            request = pb.GenerateImageRequest(model=name, prompt="a kite", num_images=1)
            events = list(stub.GenerateImage(request, timeout=120))
            assert events[-1].WhichOneof("event") == "completion"
            return [e.progress.stage for e in events if e.WhichOneof("event") == "progress"]

        def states() -> dict[str, int]:
            listed = stub.ListModels(pb.ListModelsRequest(kind=pb.MODEL_KIND_IMAGE))
            return {m.name: m.state for m in listed.models}

        assert set(states().values()) == {pb.MODEL_STATE_NOT_LOADED}
        stages = [generate(name) for name in ("nano-a", "nano-b", "nano-c", "nano-a")]
        assert all(pb.STAGE_LOADING in s for s in stages)
        assert generate("nano-a").count(pb.STAGE_LOADING) == 0  # on the device: no loading
        assert states() == {
            "nano-a": pb.MODEL_STATE_ON_DEVICE,
            "nano-b": pb.MODEL_STATE_NOT_LOADED,
            "nano-c": pb.MODEL_STATE_ON_DEVICE,
        }
        # Room made before each first load: the model that left, left before the load began.
        event = re.compile(r"loading nano-\w|nano-\w left cpu")
        said = [
            m.group()
            for line in proc.log_path.read_text().splitlines()
            for m in [event.search(line)]
            if m
        ]
        assert said == [
            "loading nano-a", "loading nano-b", "nano-a left cpu", "loading nano-c",
            "nano-b left cpu", "loading nano-a",
        ]  # fmt: skip
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert _sample(metrics, "genserve_inference_model_loads_total") == 4
        assert _sample(metrics, "genserve_inference_model_evictions_total") == 2
        assert _sample(metrics, "genserve_inference_model_load_seconds_count") == 4
    finally:
        proc.stop()


async def test_the_bridge_prefers_a_server_with_the_model_on_its_device() -> None:
    """Two targets serving one model, idle alike: work goes to the one that has it warm."""
    from rest_bridge.link.catalogue import ModelEntry
    from rest_bridge.link.channels import InferenceClient

    client = InferenceClient("127.0.0.1:1,127.0.0.1:2")
    try:
        cold, warm = (
            ModelEntry.from_pb(pb.ModelInfo(name="nano-a", kind=pb.MODEL_KIND_IMAGE, state=state))
            for state in (pb.MODEL_STATE_NOT_LOADED, pb.MODEL_STATE_ON_DEVICE)
        )
        assert cold is not None and warm is not None and warm.on_device
        client.catalogue.update("127.0.0.1:1", [cold])
        client.catalogue.update("127.0.0.1:2", [warm])
        chosen = {client.route(warm).target for _ in range(6)}  # type: ignore[union-attr]
        assert chosen == {"127.0.0.1:2"}
        client.catalogue.update("127.0.0.1:2", [cold])  # both cold: taken in turn
        chosen = {client.route(warm).target for _ in range(6)}  # type: ignore[union-attr]
        assert chosen == {"127.0.0.1:1", "127.0.0.1:2"}
    finally:
        await client.close()


async def test_two_device_queues_share_one_models_work(model_cache: Path) -> None:
    """A model on two devices (two CPU queues here, the code path of two GPUs): one replica
    and one queue each, every request to the one with the least waiting."""
    from inference_server.plans.image import plan_image

    spec = _spec("nano-pair", devices=["cpu", "cpu:1"], max_batch_size=1)
    registry = ModelRegistry(ModelTable(models=[spec]), model_cache, queue_size=8)
    assert set(registry.queues) == {"cpu", "cpu:1"}
    registry.start()
    try:
        chosen, jobs = [], []
        for i in range(6):
            plan = plan_image(spec, pb.GenerateImageRequest(prompt="a kite", seed=i, num_images=1))
            queue = registry.queue_for(spec)
            chosen.append(queue.device)
            jobs.append(queue.submit(plan.work(registry), lambda *_: None, payload=plan))
        outcomes = [await job.future for job in jobs]
        assert all(len(images) == 1 for images in outcomes)
        assert chosen.count("cpu") == chosen.count("cpu:1") == 3, chosen
        assert [registry.budgets[d].resident("nano-pair").state for d in ("cpu", "cpu:1")] == [
            "device",
            "device",
        ]
        assert registry.state(spec) == "device"
    finally:
        await registry.stop()
