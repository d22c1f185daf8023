"""Images per second through the serving stack, side by side in one run.

One inference server on loopback serves the same model folder under two names
that differ only in ``max_batch_size``: batching on (``--batch``, 8) and off (1).
Round by round, so that every column sees the same machine load, it measures:

- plain diffusers called directly in this process on the same folder, one image
  a call (the reference) and ``--batch`` prompts in one call (the most batching
  can give);
- images per second at concurrency 1, 4 and 8, batching on and off, over gRPC;
- images per second over REST through a bridge at concurrency 8, batching on, between
  two of those batched calls: the goal row holds it to 90% of them, round by round;

then one image at a time, four ways, round after round in a rotating order: plain
diffusers, gRPC with batching on and off, and REST through a bridge (batching off).
Paired by round, these give batch-1 latency against plain diffusers, the bridge's
overhead (REST minus gRPC) and the inference server's (gRPC minus plain). Last, one
inference server behind a bridge against two (concurrency 8 over REST, batching on).

On the CPU (the default) the model is the small built-in one at 128x128, 4 steps.
``--device cuda`` takes an SDXL-architecture pipeline with random weights at
published size (``bench/published.py``) at 1024x1024, 20 steps, bfloat16; ``--fp8``
adds the same grid with ``quantize = "fp8"``, ``--compile`` compiles the denoiser.
``--quick`` is a smoke run for the tests: every row, no meaningful figure.

Threads on a CPU: each inference server, and plain diffusers here, gets half the
cores as OpenMP threads (``--threads``; 1 on 2 cores). A team of one thread per core
that shares its cores with anything else (the bridge, this client, a second server,
another user) spins at every barrier waiting for a descheduled member: on the 2-core
machine this was written on, a 128x128 image took 1.9 s instead of 70 ms that way.
So one server leaves half the machine to the bridge and the client, and the fleet's
two servers take all of it: the second server's gain is an upper bound.

Run: ``python -m bench.bench_serving [--device cuda] [--fp8] [--quick] [--rows]``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import operator
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from diffusers import DiffusionPipeline

from bench.rows import Row, goal_row, report
from bench.servers import (
    Bridge,
    Inference,
    InferenceSpec,
    ModelTable,
    start_bridges,
    start_inferences,
)
from bench.stats import Send, Tally, burst, percentile
from genserve.inference.v1 import inference_pb2 as pb
from genserve.inference.v1 import inference_pb2_grpc as pb_grpc
from inference_server.loader import DTYPES, dtype_keyword, ensure_builtin

CONCURRENCY = (1, 4, 8)
TOP = max(CONCURRENCY)
GUIDANCE = 5.0
MODES = ("on", "off")
SOLO = ("plain", "on", "off", "rest")
"""The four ways of one image at a time: plain diffusers, gRPC (batching on, off), REST."""


@dataclass(frozen=True)
class Plan:
    """What one run measures, every default resolved."""

    device: str
    model: str
    size: int
    steps: int
    dtype: str
    threads: int
    rounds: int
    per_client: int
    solo_rounds: int
    batch: int
    batch_wait_ms: float | None
    batch_fill_ms: float | None
    variants: tuple[str, ...]
    compile: bool
    scale: float
    cache: Path

    @property
    def on_cpu(self) -> bool:
        return not self.device.startswith("cuda")

    def name(self, variant: str, mode: str) -> str:
        """The public model name of a variant with batching on or off."""
        return f"{variant}-batch-{mode}"

    def section(self) -> str:
        threads = f", {self.threads} thread{'s' if self.threads > 1 else ''}" if self.on_cpu else ""
        return (
            f"serving · {self.device} · {self.model} {self.size}x{self.size},"
            f" {self.steps} steps, {self.dtype}{threads}"
        )


def prompt(i: int) -> str:
    return f"a lighthouse at dawn, take {i}"


def grpc_sender(inference: Inference, model: str) -> Send:
    """One image over gRPC, as the bridge asks for it (1:1, PNG); raises unless it completes."""
    stub = pb_grpc.InferenceServiceStub(inference.channel())

    def send(i: int) -> None:
        request = pb.GenerateImageRequest(
            model=model, prompt=prompt(i), aspect_ratio="1:1", num_images=1,
            format=pb.IMAGE_FORMAT_PNG, seed=i,
        )  # fmt: skip
        events = list(stub.GenerateImage(request, timeout=600))
        if not events or events[-1].WhichOneof("event") != "completion":
            raise RuntimeError(f"{model}: the stream ended without a completion")

    return send


def rest_sender(bridge: Bridge, model: str, connections: int) -> Send:
    """One image through the bridge (``POST /api/v1/images``, waiting for the answer)."""
    client = bridge.client(connections)

    def send(i: int) -> None:
        key = bridge.keys[i % len(bridge.keys)]
        r = client.post(
            "/api/v1/images",
            json={"prompt": prompt(i), "model": model, "aspect_ratio": "1:1"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=600,
        )
        r.raise_for_status()

    return send


class Plain:
    """The reference: the same folder loaded by diffusers in this process, called directly."""

    def __init__(self, folder: Path, plan: Plan) -> None:
        if plan.on_cpu:
            torch.set_num_threads(plan.threads)
        self.plan = plan
        kwargs = {dtype_keyword(): DTYPES[plan.dtype]}
        self.pipe = DiffusionPipeline.from_pretrained(str(folder), **kwargs).to(plan.device)
        self.pipe.set_progress_bar_config(disable=True)

    def call(self, first: int, images: int) -> None:
        generator = torch.Generator("cpu").manual_seed(first)
        with torch.inference_mode():
            self.pipe(
                prompt=[prompt(first + k) for k in range(images)],
                width=self.plan.size,
                height=self.plan.size,
                num_inference_steps=self.plan.steps,
                guidance_scale=GUIDANCE,
                generator=generator,
                output_type="pil",
            )


def timed(tally: Tally, images: int, work: Callable[[], object]) -> None:
    start = time.perf_counter()
    work()
    wall = time.perf_counter() - start
    tally.add(images, wall, [wall])


def say(message: str) -> None:
    print(f"[serving] {message}", file=sys.stderr, flush=True)


def model_folder(plan: Plan) -> Path:
    """The folder both the servers and plain diffusers load (built once into the cache)."""
    if plan.model == "tiny-sdxl":
        return ensure_builtin("tiny-sdxl", plan.cache)
    folder = plan.cache / f"published-{plan.model}-{plan.dtype}-x{plan.scale:g}"
    if (folder / "model_index.json").exists():
        return folder
    try:  # written beside this benchmark; loaded only for the published sizes
        published = importlib.import_module("bench.published")
    except ImportError as exc:
        raise SystemExit(f"--model {plan.model} needs bench/published.py: {exc}") from exc
    plan.cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=plan.cache, prefix=".published-") as tmp:
        staging = Path(tmp) / folder.name
        say(f"building {plan.model} with random weights (scale {plan.scale:g}) in {folder}")
        published.build(plan.model, staging, scale=plan.scale, dtype=plan.dtype)
        staging.rename(folder)
    return folder


def model_table(plan: Plan, folder: Path, variants: tuple[str, ...]) -> ModelTable:
    base: dict[str, str | int | float | bool] = {
        "kind": "image", "source": str(folder), "device": plan.device, "dtype": plan.dtype,
        "steps": plan.steps, "guidance": GUIDANCE, "width": plan.size, "height": plan.size,
    }  # fmt: skip
    if plan.compile:
        base["compile"] = True
    if plan.batch_wait_ms is not None:
        base["batch_wait_ms"] = plan.batch_wait_ms
    if plan.batch_fill_ms is not None:
        base["batch_fill_ms"] = plan.batch_fill_ms
    table: ModelTable = {}
    for variant in variants:
        extra = {"quantize": "fp8"} if variant == "fp8" else {}
        for mode in MODES:
            batch = plan.batch if mode == "on" else 1
            table[plan.name(variant, mode)] = {**base, **extra, "max_batch_size": batch}
    return table


def inference_specs(plan: Plan, folder: Path) -> list[InferenceSpec]:
    """The server under test, then the second server of the fleet: the same threads on a
    CPU, beside the first on its GPU (or on the next GPU when there is one)."""
    threads = plan.threads if plan.on_cpu else None
    main = InferenceSpec("main", model_table(plan, folder, plan.variants), threads)
    on = plan.name("base", "on")
    second = dict(model_table(plan, folder, ("base",))[on])
    if not plan.on_cpu and torch.cuda.device_count() > 1:
        second["device"] = "cuda:1"
    return [main, InferenceSpec("second", {on: second}, threads)]


def fleet_note(plan: Plan, specs: list[InferenceSpec]) -> str:
    if plan.on_cpu:
        cores = len(os.sched_getaffinity(0))
        return (
            f"{plan.threads} of {cores} cores each: one server leaves the rest to the"
            " bridge and client, two take them"
        )
    devices = sorted({str(spec.models[plan.name("base", "on")]["device"]) for spec in specs})
    return f"on {' and '.join(devices)}" + (": one GPU shared" if len(devices) == 1 else "")


@dataclass
class Figures:
    """Everything one run measured, as it came; :func:`rows` turns it into the table."""

    plain_one: Tally = field(default_factory=Tally)
    plain_batch: Tally = field(default_factory=Tally)
    grid: dict[tuple[str, str, int], Tally] = field(default_factory=dict)
    solo: dict[str, Tally] = field(default_factory=lambda: {w: Tally() for w in SOLO})
    rest_top: Tally = field(default_factory=Tally)
    """REST at the top concurrency, batching on, in the grid's rounds."""
    rest_rounds: list[float] = field(default_factory=list)
    ceiling_rounds: list[float] = field(default_factory=list)
    """Per round: REST images per second, and plain diffusers' batched call's."""
    one_server: Tally = field(default_factory=Tally)
    two_servers: Tally = field(default_factory=Tally)
    fleet_note: str = ""
    device_name: str = ""

    def paired(self, a: str, b: str, how: Callable[[float, float], float]) -> float:
        """The median over rounds of ``how(a's latency, b's latency)``, one image at a time."""
        pairs = zip(self.solo[a].latencies, self.solo[b].latencies, strict=True)
        return percentile([how(x, y) for x, y in pairs], 0.5)


def measure_grid(
    plan: Plan, plain: Plain, main: Inference, bridge: Bridge, figures: Figures
) -> None:
    senders = {(v, m): grpc_sender(main, plan.name(v, m)) for v in plan.variants for m in MODES}
    rest = rest_sender(bridge, plan.name("base", "on"), TOP)
    say("warming up")
    for send in senders.values():
        burst(send, TOP, 1, Tally())
        burst(send, 1, 1, Tally())
    burst(rest, TOP, 1, Tally())
    plain.call(0, 1)
    plain.call(0, plan.batch)
    for r in range(plan.rounds):
        say(f"round {r + 1} of {plan.rounds}: plain diffusers, then gRPC at {CONCURRENCY}, REST")
        for k in range(plan.per_client):
            timed(figures.plain_one, 1, partial(plain.call, k, 1))
        # REST between two batched calls it is held to, so that it and its ceiling see
        # the same load on a shared machine.
        ceiling, one_round = Tally(), Tally()
        timed(ceiling, plan.batch, partial(plain.call, 0, plan.batch))
        burst(rest, TOP, plan.per_client, one_round)
        timed(ceiling, plan.batch, partial(plain.call, 0, plan.batch))
        figures.plain_batch.add(ceiling.images, ceiling.wall, ceiling.latencies)
        figures.rest_top.add(one_round.images, one_round.wall, one_round.latencies)
        figures.rest_rounds.append(one_round.per_second)
        figures.ceiling_rounds.append(ceiling.per_second)
        modes = MODES if r % 2 == 0 else MODES[::-1]  # neither side always goes first
        for c in CONCURRENCY:
            for variant in plan.variants:
                for mode in modes:
                    tally = figures.grid.setdefault((variant, mode, c), Tally())
                    burst(senders[variant, mode], c, plan.per_client, tally)


def measure_solo(
    plan: Plan, plain: Plain, main: Inference, bridge: Bridge, figures: Figures
) -> None:
    """One image at a time, four ways, in rounds; each round starts one further along.

    REST goes to the batching-off name, so that it and gRPC make the same request.
    """
    off = plan.name("base", "off")
    ways: dict[str, Send] = {
        "plain": lambda i: plain.call(i, 1),
        "on": grpc_sender(main, plan.name("base", "on")),
        "off": grpc_sender(main, off),
        "rest": rest_sender(bridge, off, 1),
    }
    say(f"one image at a time: {plan.solo_rounds} rounds of {', '.join(SOLO)}")
    ways["rest"](0)  # the bridge's first request pays for its connections
    for i in range(plan.solo_rounds):
        turn = SOLO[i % len(SOLO) :] + SOLO[: i % len(SOLO)]
        for way in turn:
            timed(figures.solo[way], 1, partial(ways[way], i))


def measure_fleet(plan: Plan, one: Bridge, two: Bridge, figures: Figures) -> None:
    """Concurrency 8 over REST, batching on: one server behind a bridge, then two."""
    name = plan.name("base", "on")
    sides = [
        (rest_sender(one, name, TOP), figures.one_server),
        (rest_sender(two, name, TOP), figures.two_servers),
    ]
    say("one server against two behind a bridge")
    for send, _ in sides:
        burst(send, TOP, 1, Tally())
    for r in range(plan.rounds):
        for send, tally in sides if r % 2 == 0 else sides[::-1]:
            burst(send, TOP, plan.per_client, tally)


def gpu_name(plan: Plan) -> str:
    if plan.on_cpu:
        return ""
    return str(torch.cuda.get_device_name(torch.device(plan.device)))


def run(plan: Plan) -> list[Row]:
    folder = model_folder(plan)
    figures = Figures(device_name=gpu_name(plan))
    # The folder outlives the processes that write their logs into it.
    with tempfile.TemporaryDirectory(prefix="genserve-b-") as tmp, contextlib.ExitStack() as stack:
        say("starting inference servers")
        specs = inference_specs(plan, folder)
        servers = start_inferences(plan.cache, Path(tmp), specs)
        for server in servers:
            stack.callback(server.proc.stop)
        main = servers[0]
        say("starting bridges")
        bridges = start_bridges(Path(tmp), [[main], servers], keys=TOP)
        for bridge in bridges:
            stack.callback(bridge.proc.stop)
        say("loading plain diffusers")
        plain = Plain(folder, plan)
        measure_grid(plan, plain, main, bridges[0], figures)
        measure_solo(plan, plain, main, bridges[0], figures)
        del plain  # its memory, before the fleet's servers work
        measure_fleet(plan, bridges[0], bridges[1], figures)
        figures.fleet_note = fleet_note(plan, specs)
    return rows(plan, figures)


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def rows(plan: Plan, f: Figures) -> list[Row]:
    section = plan.section()
    plain = f.plain_one
    out = [
        Row(section, "plain diffusers, one image a call", plain.per_second, "img/s",
            f"p50 {plain.p50_ms:.1f} ms a call; the reference"),
        Row(section, f"plain diffusers, {plan.batch} prompts in one call",
            f.plain_batch.per_second, "img/s",
            f"{ratio(f.plain_batch.per_second, plain.per_second):.2f}x one a call:"
            " what batching can give at best"),
    ]  # fmt: skip
    for variant in plan.variants:
        label = "" if variant == "base" else f"{variant}, "
        for c in CONCURRENCY:
            for mode in MODES:
                tally = f.grid[variant, mode, c]
                note = f"p50 {tally.p50_ms:.1f} ms a request"
                if mode == "on":
                    off = f.grid[variant, "off", c].per_second
                    note += f"; {ratio(tally.per_second, off):.2f}x batching off"
                size = plan.batch if mode == "on" else 1
                out.append(
                    Row(section, f"gRPC {label}c={c}, batching {mode} (max_batch_size {size})",
                        tally.per_second, "img/s", note)
                )  # fmt: skip
    rest = f.rest_top
    out.append(
        Row(section, f"REST c={TOP}, batching on (max_batch_size {plan.batch})",
            rest.per_second, "img/s",
            f"p50 {rest.p50_ms:.1f} ms a request; each round between two batched calls")
    )  # fmt: skip
    solo = f.solo
    out.append(
        Row(section, "batch-1 latency, plain diffusers", solo["plain"].p50_ms, "ms",
            f"p50 of {len(solo['plain'].latencies)} rounds of one image at a time, four ways")
    )  # fmt: skip
    for mode in MODES:
        out.append(
            Row(section, f"batch-1 latency, batching {mode}", solo[mode].p50_ms, "ms",
                f"{f.paired(mode, 'plain', ratio):.3f} of plain diffusers' (median over rounds)")
        )  # fmt: skip
    out += [
        Row(section, "bridge overhead (REST minus gRPC, same request)",
            f.paired("rest", "off", operator.sub) * 1000, "ms",
            f"median over rounds; REST p50 {solo['rest'].p50_ms:.1f} ms"),
        Row(section, "inference server overhead (gRPC minus plain diffusers)",
            f.paired("off", "plain", operator.sub) * 1000, "ms",
            "median over rounds: queue, PNG and thumbnail encoding, the stream"),
        Row(section, f"one inference server behind the bridge, c={TOP}",
            f.one_server.per_second, "img/s",
            f"batching on; p50 {f.one_server.p50_ms:.1f} ms a request"),
        Row(section, f"two inference servers behind one bridge, c={TOP}",
            f.two_servers.per_second, "img/s",
            f"{ratio(f.two_servers.per_second, f.one_server.per_second):.2f}x one;"
            f" {f.fleet_note}"),
    ]  # fmt: skip
    return out + goals(plan, f)


def goals(plan: Plan, f: Figures) -> list[Row]:
    section = f"goals · {plan.device}"
    top = TOP
    rest = f.rest_top
    on, off = f.grid["base", "on", top].per_second, f.grid["base", "off", top].per_second
    small_cpu = plan.on_cpu and plan.model == "tiny-sdxl"
    fp8 = f.grid.get(("fp8", "on", top))
    hopper = any(name in f.device_name for name in ("H100", "H200"))
    latency = f.paired("on", "plain", ratio)
    rest_ratios = [ratio(a, b) for a, b in zip(f.rest_rounds, f.ceiling_rounds, strict=True)]
    return [
        goal_row(section, f"c={top}, batching on / off (small model, CPU)", ratio(on, off), "x",
                 at_least=1.3, applies=small_cpu,
                 note="" if small_cpu else "a goal for the small model on a CPU"),
        goal_row(section, f"c={top}, batching on / plain sequential diffusers (GPU)",
                 ratio(on, f.plain_one.per_second), "x", at_least=1.5, applies=not plan.on_cpu,
                 note="a goal for SDXL at 1024x1024 on a GPU" if plan.on_cpu else ""),
        goal_row(section, "batch-1 latency / plain diffusers (batching on)", latency, "x",
                 at_most=1.05, note="one image at a time; median over rounds of the ratio"),
        goal_row(section, f"REST c={top}, batching on / in-process batched ceiling",
                 percentile(rest_ratios, 0.5), "x", at_least=0.9,
                 note=f"median over {len(rest_ratios)} rounds of REST img/s over plain diffusers'"
                 f" {plan.batch} prompts in one call, same round; {rest.per_second:.2f} against"
                 f" {f.plain_batch.per_second:.2f} img/s"),
        goal_row(section, f"FP8 SDXL 1024x1024, 20 steps, c={top}, batching on",
                 fp8.per_second if fp8 else None, "img/s", at_least=2.5, applies=hopper,
                 note=f.device_name if hopper else "needs --device cuda --fp8 on an H100 or H200"),
    ]  # fmt: skip


def resolve(args: argparse.Namespace) -> Plan:
    """The run's plan: the device's defaults, then what was given, then ``--quick``'s."""
    on_cpu = not args.device.startswith("cuda")
    model = args.model or ("tiny-sdxl" if on_cpu else "sdxl")
    small = model == "tiny-sdxl"
    cores = len(os.sched_getaffinity(0))
    quick = args.quick
    return Plan(
        device=args.device,
        model=model,
        size=args.size or (64 if quick else 128 if small else 1024),
        steps=args.steps or (2 if quick else 4 if small else 20),
        dtype=args.dtype or ("float32" if on_cpu else "bfloat16"),
        threads=args.threads or (max(1, cores // 2) if on_cpu else 1),
        rounds=args.rounds or (1 if quick else 3 if on_cpu else 2),
        per_client=args.per_client or (1 if quick else 4 if on_cpu else 2),
        solo_rounds=args.solo_rounds or (2 if quick else 20 if on_cpu else 6),
        batch=args.batch,
        batch_wait_ms=args.batch_wait_ms,
        batch_fill_ms=args.batch_fill_ms,
        variants=("base", "fp8") if args.fp8 else ("base",),
        compile=args.compile,
        scale=args.scale,
        cache=args.cache,
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--model", choices=("tiny-sdxl", "sdxl"), help="tiny-sdxl on cpu, else sdxl")
    p.add_argument("--scale", type=float, default=1.0, help="the published model's size (1.0)")
    p.add_argument("--size", type=int, help="image side: 128 (tiny-sdxl), 1024 (sdxl)")
    p.add_argument("--steps", type=int, help="denoising steps: 4 (tiny-sdxl), 20 (sdxl)")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"))
    p.add_argument("--threads", type=int, help="the server's and plain diffusers' CPU threads")
    p.add_argument("--rounds", type=int, help="rounds of the whole grid (3 on cpu, 2 on cuda)")
    p.add_argument("--per-client", type=int, help="requests per client and burst (4; 2 on cuda)")
    p.add_argument("--solo-rounds", type=int, help="rounds of one image at a time (20; 6 on cuda)")
    p.add_argument("--batch", type=int, default=8, help="max_batch_size with batching on (8)")
    p.add_argument("--batch-wait-ms", type=float, help="batch_wait_ms (unset: the model's)")
    p.add_argument("--batch-fill-ms", type=float, help="batch_fill_ms (unset: the model's)")
    p.add_argument("--fp8", action="store_true", help="add the grid with quantize = 'fp8'")
    p.add_argument("--compile", action="store_true", help="compile = true for every model")
    p.add_argument("--quick", action="store_true", help="a smoke run: every row, tiny figures")
    p.add_argument("--rows", action="store_true", help="rows as JSON lines (for bench.run_all)")
    p.add_argument("--cache", type=Path, default=Path("data/test-models"))
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    plan = resolve(args)
    if min(plan.batch, plan.rounds, plan.per_client, plan.solo_rounds, plan.threads) < 1:
        parser().error("--batch, --rounds, --per-client, --solo-rounds, --threads: at least 1")
    report(run(plan), args.rows, "serving")


if __name__ == "__main__":
    main()
