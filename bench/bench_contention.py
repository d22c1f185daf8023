"""A shared host: the same small image alone and beside a CPU hog, through a real server.

One inference server on loopback serves the small built-in image model
(tiny-sdxl, 128x128, 4 steps) with its own CPU thread policy (``inference_server.threads``:
as many threads as it chooses, OpenMP threads that wait passively). The same image is
asked for over gRPC at concurrency 1 and 8, with the machine to itself, then beside
a CPU hog: as many busy-looping processes as there are cores, started and stopped by
this benchmark (and bounded in time should it die); two rounds of both, so that
both see the same background load. Printed: the median
and p90 latency of each, and the slowdowns (hog / alone). Sharing the cores with as
many busy processes as cores explains about 2x; an OpenMP team that spins at its
barriers while a member is descheduled made it 15x (0.22 s to 3.3 s at the median).

``--compare`` measures a second server too, with torch's own thread policy (one
thread per core, OpenMP's default spinning: ``GOMP_SPINCOUNT=300000``), set through
the environment the server honours; ``--quick`` is a smoke run (64x64, 2 steps, a
few requests). Run::

    python -m bench.bench_contention [--compare] [--quick] [--rows]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.rows import Row, goal_row, report
from bench.servers import Inference, InferenceSpec, start_inferences
from bench.stats import Send, Tally, burst, percentile
from genserve.inference.v1 import inference_pb2 as pb
from genserve.inference.v1 import inference_pb2_grpc as pb_grpc

GOAL = 3.0
"""The most the hog may slow the median by (2x is the cores' share)."""
HOG_LIMIT_S = 600
"""A hog process ends by itself after this many seconds, whatever happens to the benchmark."""
HOG = (
    "import time\n"
    "end = time.monotonic() + {seconds}\n"
    "while time.monotonic() < end:\n"
    "    sum(range(10000))\n"
)
TORCH_POLICY = {"GOMP_SPINCOUNT": "300000", "KMP_BLOCKTIME": "200"}
"""OpenMP's own waiting (libgomp's and Intel's defaults), set explicitly so the server keeps it."""


@dataclass(frozen=True)
class Plan:
    size: int
    steps: int
    requests: int
    per_client: int
    rounds: int
    cores: int
    cache: Path


@dataclass
class Latencies:
    """Seconds per request of one server: alone and beside the hog, at c=1 and c=8."""

    policy: str
    alone_1: list[float]
    alone_8: list[float]
    hog_1: list[float]
    hog_8: list[float]


def say(message: str) -> None:
    print(f"[contention] {message}", file=sys.stderr, flush=True)


def sender(inference: Inference) -> Send:
    stub = pb_grpc.InferenceServiceStub(inference.channel())

    def send(i: int) -> None:
        request = pb.GenerateImageRequest(
            model="small", prompt="a lighthouse at dawn", aspect_ratio="1:1", num_images=1,
            format=pb.IMAGE_FORMAT_PNG, seed=i,
        )  # fmt: skip
        events = list(stub.GenerateImage(request, timeout=600))
        if not events or events[-1].WhichOneof("event") != "completion":
            raise RuntimeError("the stream ended without a completion")

    return send


@contextlib.contextmanager
def cpu_hog(processes: int) -> Iterator[None]:
    """``processes`` busy-looping Python processes, for as long as the block runs."""
    code = HOG.format(seconds=HOG_LIMIT_S)
    hogs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(processes)]
    try:
        time.sleep(0.5)  # every hog running before the first request
        yield
    finally:
        for hog in hogs:
            hog.terminate()
        for hog in hogs:
            hog.wait()


def series(send: Send, plan: Plan) -> tuple[list[float], list[float]]:
    """Latencies at c=1 (``requests`` one after another), then at c=8 (``per_client`` each)."""
    one, eight = Tally(), Tally()
    burst(send, 1, plan.requests, one)
    burst(send, 8, plan.per_client, eight)
    return one.latencies, eight.latencies


def policy_line(inference: Inference) -> str:
    """What the server says it chose (its ``cpu threads`` log line), or ``?``."""
    for line in inference.proc.log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and "intra_op_threads" in record:
                return (
                    f"{record['intra_op_threads']} threads ({record['threads_from']}), "
                    f"wait {record['wait_policy']}"
                )
    return "?"


def measure(plan: Plan, policies: dict[str, dict[str, str]]) -> list[Latencies]:
    model: dict[str, str | int | float | bool] = {
        "kind": "image", "source": "builtin:tiny-sdxl", "width": plan.size,
        "height": plan.size, "steps": plan.steps, "max_batch_size": 8,
    }  # fmt: skip
    found = []
    with tempfile.TemporaryDirectory(prefix="contention-") as tmp:
        for name, env in policies.items():
            spec = InferenceSpec(name, {"small": model}, env=env)
            (inference,) = start_inferences(plan.cache, Path(tmp), [spec])
            try:
                send = sender(inference)
                for i in range(3):  # warm: the first calls pay for allocation
                    send(i)
                m = Latencies(name, [], [], [], [])
                for r in range(plan.rounds):  # in turns, so both see the same background load
                    say(f"{name}, round {r + 1} of {plan.rounds}: alone")
                    one, eight = series(send, plan)
                    m.alone_1 += one
                    m.alone_8 += eight
                    say(f"{name}, round {r + 1}: beside {plan.cores} busy processes")
                    with cpu_hog(plan.cores):
                        one, eight = series(send, plan)
                    m.hog_1 += one
                    m.hog_8 += eight
                m.policy = f"{name}: {policy_line(inference)}"
            finally:
                inference.proc.stop()
            found.append(m)
    return found


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def rows(plan: Plan, measured: list[Latencies]) -> list[Row]:
    out = []
    goals = []
    for m in measured:
        section = (
            f"contention · cpu · tiny-sdxl {plan.size}x{plan.size}, {plan.steps} steps · {m.policy}"
        )
        slowdowns = {}
        for c, alone, hog in ((1, m.alone_1, m.hog_1), (8, m.alone_8, m.hog_8)):
            for q, label in ((0.5, "median"), (0.9, "p90")):
                a, h = percentile(alone, q), percentile(hog, q)
                out.append(Row(section, f"c={c} {label}, alone", a, "s"))
                out.append(Row(section, f"c={c} {label}, beside a CPU hog", h, "s",
                               note=f"{plan.cores} busy processes"))  # fmt: skip
                out.append(Row(section, f"c={c} {label} slowdown (hog / alone)", ratio(h, a), "x"))
            slowdowns[c] = ratio(percentile(hog, 0.5), percentile(alone, 0.5))
        if m.policy.startswith("server"):
            for c, slow in slowdowns.items():
                goals.append(
                    goal_row(
                        f"goals · cpu · contention ({plan.cores} cores)",
                        f"CPU hog's slowdown of the median, c={c} (server's policy)",
                        slow, "x", at_most=GOAL, note="the cores' share alone: about 2x",
                    )
                )  # fmt: skip
    return out + goals


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--size", type=int, help="image side (128; 64 with --quick)")
    p.add_argument("--steps", type=int, help="denoising steps (4; 2 with --quick)")
    p.add_argument("--requests", type=int, help="requests at c=1 a round (8; 3 with --quick)")
    p.add_argument("--per-client", type=int, help="per client at c=8 a round (2; 1 with --quick)")
    p.add_argument("--rounds", type=int, help="rounds of alone, then beside the hog (2; 1 quick)")
    p.add_argument("--compare", action="store_true", help="torch's own thread policy too")
    p.add_argument("--quick", action="store_true", help="a smoke run: every row, tiny figures")
    p.add_argument("--rows", action="store_true", help="rows as JSON lines (for bench.run_all)")
    p.add_argument("--cache", type=Path, default=Path("data/test-models"))
    args = p.parse_args(argv)
    quick = args.quick
    cores = len(os.sched_getaffinity(0))
    plan = Plan(
        size=args.size or (64 if quick else 128),
        steps=args.steps or (2 if quick else 4),
        requests=args.requests or (3 if quick else 8),
        per_client=args.per_client or (1 if quick else 2),
        rounds=args.rounds or (1 if quick else 2),
        cores=cores,
        cache=args.cache,
    )
    policies: dict[str, dict[str, str]] = {"server": {}}
    if args.compare:
        policies["torch"] = {**TORCH_POLICY, "GENSERVE_INFERENCE_CPU_THREADS": str(cores)}
    report(rows(plan, measure(plan, policies)), args.rows, "contention")


if __name__ == "__main__":
    main()
