"""Where the REST path's time goes at concurrency 8, against the in-process batched ceiling.

One inference server (batching on, ``max_batch_size`` 8) behind one bridge, on
loopback, and the same model folder loaded by plain diffusers in this process. Round
after round, in a rotating order so every column sees the same machine load:

- the ceiling: plain diffusers, 8 prompts in one call (``bench_serving``'s figure);
- gRPC at concurrency 8, batching on (the inference server alone);
- REST at concurrency 8, batching on (the bridge in front of it).

For each it prints images per second (median over rounds, with the spread), the
ratio to the ceiling of the same round, the milliseconds per image above the
ceiling, the mean rows per batched call (from the server's metrics), each process's
CPU milliseconds per image, and each request's phases: for gRPC the server's own
timings (queued, inference, encoding); for REST the bridge's gRPC span
(``generation_time``) against the latency its client saw.

``--profile DIR`` then runs one more REST round with both servers' event-loop threads
under cProfile (``bench/profiled.py``) and writes ``bridge.prof`` and ``inference.prof``
there, with their top entries printed (the measured rounds run without it).

Run: ``python -m bench.bench_overhead [--rounds 5] [--per-client 4] [--profile DIR]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pstats
import resource
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench import bench_serving as serving
from bench import profiled
from bench.servers import Bridge, Inference, InferenceSpec, start_bridges, start_inferences
from bench.stats import Send, Tally, burst, percentile
from genserve.inference.v1 import inference_pb2 as pb
from genserve.inference.v1 import inference_pb2_grpc as pb_grpc

WAYS = ("ceiling", "grpc", "rest")
BASELINE = "rest, baseline bridge"
NO_FILL = ("grpc, fill off", "rest, fill off")
"""With ``--compare-fill``: the same model with ``batch_fill_ms = 0``, in the same rounds."""
TOP = 8


@dataclass
class Phases:
    """Per-request seconds by phase name, as the answers reported them."""

    seconds: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.seconds.setdefault(name, []).append(value)

    def medians_ms(self) -> dict[str, float]:
        return {k: percentile(v, 0.5) * 1000 for k, v in self.seconds.items()}


@dataclass
class Way:
    """One column: images per second by round, and what its rounds cost."""

    rates: list[float] = field(default_factory=list)
    rows: list[float] = field(default_factory=list)
    cpu_ms: dict[str, list[float]] = field(default_factory=dict)
    phases: Phases = field(default_factory=Phases)
    latencies: list[float] = field(default_factory=list)


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User and system CPU seconds of a process and its threads so far (or of one thread)."""
    path = Path(f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat")
    fields = path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def batch_rows(inference: Inference) -> tuple[float, float]:
    """The server's batched calls so far: rows summed and calls counted."""
    url = f"http://127.0.0.1:{inference.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("genserve_inference_batch_rows_sum"):
            total += float(line.split()[-1])
        elif line.startswith("genserve_inference_batch_rows_count"):
            count += float(line.split()[-1])
    return total, count


def grpc_sender(inference: Inference, model: str, phases: Phases) -> Send:
    stub = pb_grpc.InferenceServiceStub(inference.channel())

    def send(i: int) -> None:
        request = pb.GenerateImageRequest(
            model=model, prompt=serving.prompt(i), aspect_ratio="1:1", num_images=1,
            format=pb.IMAGE_FORMAT_PNG, seed=i,
        )  # fmt: skip
        events = list(stub.GenerateImage(request, timeout=600))
        last = events[-1] if events else None
        if last is None or last.WhichOneof("event") != "completion":
            raise RuntimeError(f"{model}: the stream ended without a completion")
        t = last.completion.timings
        phases.add("server queued", t.queued_seconds)
        phases.add("server inference", t.inference_seconds)
        phases.add("server encoding", t.encode_seconds)
        phases.add("server total", t.total_seconds)

    return send


def rest_sender(bridge: Bridge, model: str, phases: Phases) -> Send:
    client = bridge.client(TOP)

    def send(i: int) -> None:
        key = bridge.keys[i % len(bridge.keys)]
        start = time.perf_counter()
        r = client.post(
            "/api/v1/images",
            json={"prompt": serving.prompt(i), "model": model, "aspect_ratio": "1:1"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=600,
        )
        r.raise_for_status()
        latency = time.perf_counter() - start
        span = r.json()["data"]["generation_time"] / 1000
        phases.add("bridge gRPC span", span)
        phases.add("REST latency", latency)
        phases.add("REST latency minus gRPC span", latency - span)

    return send


def measure(
    plan: serving.Plan,
    plain: serving.Plain,
    main: Inference,
    bridge: Bridge,
    rounds: int,
    per_client: int,
    baseline: Bridge | None = None,
    compare_fill: bool = False,
) -> dict[str, Way]:
    on = plan.name("base", "on")
    names = WAYS + ((BASELINE,) if baseline is not None else ())
    names += NO_FILL if compare_fill else ()
    ways = {w: Way() for w in names}
    senders: dict[str, Send] = {
        "grpc": grpc_sender(main, on, ways["grpc"].phases),
        "rest": rest_sender(bridge, on, ways["rest"].phases),
    }
    if compare_fill:
        grpc_way, rest_way = NO_FILL
        senders[grpc_way] = grpc_sender(main, no_fill(on), ways[grpc_way].phases)
        senders[rest_way] = rest_sender(bridge, no_fill(on), ways[rest_way].phases)
    processes = {"bridge": bridge.proc.popen.pid, "inference": main.proc.popen.pid}
    if baseline is not None:
        senders[BASELINE] = rest_sender(baseline, on, ways[BASELINE].phases)
        processes["baseline bridge"] = baseline.proc.popen.pid

    def cpu_now() -> dict[str, float]:
        """Each process's CPU seconds, and apart the event loops' (their main threads)."""
        cpu = {name: cpu_seconds(pid) for name, pid in processes.items()}
        cpu.update({f"{name} loop": cpu_seconds(pid, pid) for name, pid in processes.items()})
        cpu["client"] = own_cpu()
        return cpu

    def run_way(way: str) -> None:
        tally = Tally()
        cpu = cpu_now()
        rows = batch_rows(main)
        if way == "ceiling":
            for _ in range(per_client):
                serving.timed(tally, TOP, lambda: plain.call(0, TOP))
        else:
            burst(senders[way], TOP, per_client, tally)
            ways[way].latencies += tally.latencies
        after = batch_rows(main)
        cpu_after = cpu_now()
        record = ways[way]
        record.rates.append(tally.per_second)
        if way != "ceiling":
            calls = after[1] - rows[1]
            record.rows.append((after[0] - rows[0]) / calls if calls else float("nan"))
        for name, value in cpu_after.items():
            record.cpu_ms.setdefault(name, []).append((value - cpu[name]) * 1000 / tally.images)

    say("warming up")
    plain.call(0, TOP)
    for send in senders.values():
        burst(send, TOP, 1, Tally())
    for record in ways.values():
        record.phases.seconds.clear()
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        say(f"round {r + 1} of {rounds}: {', '.join(order)}")
        for name in order:
            run_way(name)
    return ways


def no_fill(model: str) -> str:
    """The name of ``model``'s twin with ``batch_fill_ms = 0`` (``--compare-fill``)."""
    return f"{model}-no-fill"


def say(message: str) -> None:
    print(f"[overhead] {message}", file=sys.stderr, flush=True)


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    m = statistics.median(values)
    return f"{fmt.format(m)} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def summary(ways: dict[str, Way]) -> list[str]:
    ceiling = ways["ceiling"].rates
    lines = []
    for name, way in ways.items():
        ratios = [r / c for r, c in zip(way.rates, ceiling, strict=True)]
        gap_ms = [1000 / r - 1000 / c for r, c in zip(way.rates, ceiling, strict=True)]
        line = f"{name} img/s {spread(way.rates)}"
        if name != "ceiling":
            line += f"  of ceiling {spread(ratios, '{:.3f}')}  +ms/img {spread(gap_ms, '{:.1f}')}"
            line += f"  rows/call {spread(way.rows)}"
            line += f"  p50 {percentile(way.latencies, 0.5) * 1000:.0f} ms"
        cpu = ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in way.cpu_ms.items())
        lines.append(line)
        lines.append(f"    CPU ms/img: {cpu}")
        if way.phases.seconds:
            shown = ", ".join(f"{k} {v:.1f}" for k, v in way.phases.medians_ms().items())
            lines.append(f"    per request (median ms): {shown}")
    return lines


def launcher(profile: Path | None, name: str) -> list[str]:
    if profile is None:
        return []
    return ["-m", "bench.profiled", str(profile / f"{name}.prof")]


def profiled_round(main: Inference, bridge: Bridge, model: str, per_client: int) -> None:
    """One REST round at concurrency 8 with both servers' event loops profiled."""
    send = rest_sender(bridge, model, Phases())
    procs = (main.proc.popen, bridge.proc.popen)
    for proc in procs:
        proc.send_signal(profiled.START)
    time.sleep(0.5)
    say("one REST round, profiled")
    burst(send, TOP, per_client, Tally())
    for proc in procs:
        proc.send_signal(profiled.STOP)
    time.sleep(2)  # the files are written


def show_profile(path: Path, top: int) -> None:
    if not path.exists():
        say(f"no profile at {path}")
        return
    print(f"\n== {path.name}: top {top} by own time ==")
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--per-client", type=int, default=4, help="requests per client and round")
    p.add_argument("--batch-wait-ms", type=float, help="the model's batch_wait_ms (its default)")
    p.add_argument("--batch", type=int, default=TOP, help="the model's max_batch_size (8)")
    p.add_argument("--batch-fill-ms", type=float, help="the model's batch_fill_ms (its default)")
    p.add_argument("--profile", type=Path, help="run both servers under cProfile, files here")
    p.add_argument("--top", type=int, default=25, help="profile entries to print")
    p.add_argument("--cache", type=Path, default=Path("data/test-models"))
    p.add_argument(
        "--baseline-tree",
        type=Path,
        help="another checkout of genserve (an earlier commit, say): a second bridge runs its "
        "code against the same inference server, measured in the same rounds",
    )
    p.add_argument(
        "--compare-fill",
        action="store_true",
        help="add gRPC and REST columns on a twin of the model with batch_fill_ms = 0",
    )
    args = p.parse_args(argv)
    serving_args = ["--cache", str(args.cache), "--batch", str(args.batch)]
    if args.batch_wait_ms is not None:
        serving_args += ["--batch-wait-ms", str(args.batch_wait_ms)]
    if args.batch_fill_ms is not None:
        serving_args += ["--batch-fill-ms", str(args.batch_fill_ms)]
    plan = serving.resolve(serving.parser().parse_args(serving_args))
    folder = serving.model_folder(plan)
    if args.profile is not None:
        args.profile = args.profile.resolve()
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="genserve-o-") as tmp, contextlib.ExitStack() as stack:
        say("starting an inference server and a bridge")
        table = serving.model_table(plan, folder, ("base",))
        if args.compare_fill:
            on = plan.name("base", "on")
            table[no_fill(on)] = {**table[on], "batch_fill_ms": 0}
        spec = InferenceSpec("main", table, plan.threads)
        (main_server,) = start_inferences(
            plan.cache, Path(tmp), [spec], launcher(args.profile, "inference")
        )
        stack.callback(main_server.proc.stop)
        (bridge,) = start_bridges(
            Path(tmp), [[main_server]], keys=TOP, launcher=launcher(args.profile, "bridge")
        )
        stack.callback(bridge.proc.stop)
        baseline = None
        if args.baseline_tree is not None:
            tree = args.baseline_tree.resolve()
            home = Path(tmp) / "baseline"
            home.mkdir()
            env = {"PYTHONPATH": f"{tree}{os.pathsep}{tree / 'clients'}"}
            (baseline,) = start_bridges(home, [[main_server]], keys=TOP, extra_env=env)
            stack.callback(baseline.proc.stop)
        plain = serving.Plain(folder, plan)
        ways = measure(
            plan, plain, main_server, bridge, args.rounds, args.per_client, baseline,
            args.compare_fill,
        )  # fmt: skip
        if args.profile is not None:
            profiled_round(main_server, bridge, plan.name("base", "on"), args.per_client)
    print(plan.section())
    print(
        f"{args.rounds} rounds, {TOP} clients x {args.per_client} requests, max_batch_size"
        f" {args.batch} (median, min-max)"
    )
    for line in summary(ways):
        print(line)
    if args.profile is not None:
        show_profile(args.profile / "bridge.prof", args.top)
        show_profile(args.profile / "inference.prof", args.top)


if __name__ == "__main__":
    main()
