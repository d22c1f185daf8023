"""``make bench``: every benchmark, each in a process of its own, then one table.

Each benchmark runs with ``--rows`` and writes its figures as JSON lines
(``bench.rows``); its progress and its libraries' messages go to stderr as they
come. The table holds every row in order, then every goal: its measured value,
its bound, and pass or short (n/a where the goal is for other hardware).

``--device cpu`` (the default) runs the small models on this machine;
``--device cuda`` the published-size SDXL (serving) and the tiny video models on
the GPU; ``--device cpu --device cuda`` both. ``--fp8`` and ``--compile`` go to the
serving benchmark on a GPU; ``--quick`` makes every benchmark a smoke run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.rows import Row, parse, print_table


@dataclass(frozen=True)
class Bench:
    """A benchmark module; ``per_device``: run once per ``--device``, with it."""

    name: str
    module: str
    per_device: bool


BENCHES = (
    Bench("serving", "bench.bench_serving", per_device=True),
    Bench("encode", "bench.bench_encode", per_device=False),
    Bench("video", "bench.bench_video", per_device=True),
    Bench("step cache", "bench.bench_step_cache", per_device=True),
    Bench("turns", "bench.bench_turns", per_device=False),
    Bench("contention", "bench.bench_contention", per_device=False),
)


def command(bench: Bench, device: str | None, args: argparse.Namespace) -> list[str]:
    cmd = [sys.executable, "-m", bench.module, "--rows"]
    if device is not None:
        cmd += ["--device", device]
    if args.quick:
        cmd.append("--quick")
    if bench.name in ("serving", "contention") and args.cache is not None:
        cmd += ["--cache", str(args.cache)]
    if bench.name == "serving":
        if device is not None and device.startswith("cuda"):
            cmd += ["--fp8"] * args.fp8 + ["--compile"] * args.compile
    return cmd


def run_one(cmd: list[str]) -> tuple[int, list[Row]]:
    """Runs a benchmark; its rows come back, every other line of its stdout goes to stderr."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    rows = []
    for line in proc.stdout:
        found = parse([line])
        rows += found
        if not found:
            sys.stderr.write(line)
    return proc.wait(), rows


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--device", action="append", help="cpu (default), cuda; may repeat")
    parser.add_argument("--only", action="append", choices=[b.name for b in BENCHES])
    parser.add_argument("--fp8", action="store_true", help="serving on cuda: the FP8 grid too")
    parser.add_argument("--compile", action="store_true", help="serving on cuda: compile = true")
    parser.add_argument("--quick", action="store_true", help="smoke runs: every row, no figures")
    parser.add_argument(
        "--cache", type=Path, help="the serving and contention benchmarks' model cache"
    )
    args = parser.parse_args()
    devices = args.device or ["cpu"]
    rows: list[Row] = []
    failed = 0
    for bench in BENCHES:
        if args.only and bench.name not in args.only:
            continue
        for device in devices if bench.per_device else [None]:
            cmd = command(bench, device, args)
            print(f"=== {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
            code, found = run_one(cmd)
            rows += found
            if code:
                failed = 1
                rows.append(
                    Row(f"{bench.name} · {device or 'any device'}", "failed", None, "",
                        note=f"exit status {code}; its output is above")
                )  # fmt: skip
    goals = [row for row in rows if row.goal]
    cores = len(os.sched_getaffinity(0))
    title = f"genserve benchmarks · {cores} CPU cores · {', '.join(devices)}"
    print_table([row for row in rows if not row.goal] + goals, title)
    return failed


if __name__ == "__main__":
    sys.exit(main())
