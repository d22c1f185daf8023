"""A soak with the bridge's memory watched: steady generations with previews, then big bodies.

Starts an inference server (a small built-in image model, ``--steps`` steps) and a
bridge on SQLite, on loopback, then:

1. sends ``--rate`` image requests a second for ``--seconds`` seconds, each asking
   for a preview at every step (``"preview": 1``), and prints the bridge's resident
   memory (``VmRSS``) every ``--every`` seconds: with previews and finished jobs
   bounded (``rest_bridge/generation/live.py``) it stays flat once warm;
2. sends sixteen 30 MB bodies at once to ``POST /api/v1/3d``, without a key and
   then with one (invalid JSON, so nothing is generated), and prints the memory
   before, right after and ``--settle`` seconds later.

Run: ``python -m bench.soak [--seconds 600] [--rate 1]``. The issue asks for ten
minutes; the numbers in the README came from a shorter run, said there.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.load import SECRET, models_file, new_keys, rss_mib, warm_up
from tests.utils.procs import Proc, start_bridge, start_inference

BIG_BODY = 30 * 1024 * 1024
BIG_BODIES = 16


async def steady(base: str, key: str, bridge: Proc, args: argparse.Namespace) -> None:
    statuses: dict[int, int] = {}
    started = time.monotonic()
    next_print = started
    tasks: set[asyncio.Task[None]] = set()
    headers = {"Authorization": f"Bearer {key}"}

    async def one(client: httpx.AsyncClient, n: int) -> None:
        try:
            r = await client.post(
                "/api/v1/images",
                json={"prompt": f"soak {n}", "preview": 1},
                headers=headers,
                timeout=120,
            )
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        except httpx.HTTPError:
            statuses[0] = statuses.get(0, 0) + 1

    async with httpx.AsyncClient(base_url=base) as client:
        n = 0
        while (now := time.monotonic()) - started < args.seconds:
            if now >= next_print:
                done = sum(statuses.values())
                rss = rss_mib(bridge)
                print(f"  t={now - started:6.0f} s  bridge RSS {rss:7.1f} MiB  {done} done")
                next_print += args.every
            if len(tasks) < 32:
                task = asyncio.create_task(one(client, n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            await asyncio.sleep(1 / args.rate)
        if tasks:
            await asyncio.wait(tasks, timeout=150)
    print(f"  end     bridge RSS {rss_mib(bridge):7.1f} MiB  answers by status {statuses}")


def big_bodies(base: str, key: str | None, bridge: Proc, settle_s: float) -> None:
    payload = b"{" * BIG_BODY
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"

    def send(_: int) -> int:
        try:
            return httpx.post(
                f"{base}/api/v1/3d", content=payload, headers=headers, timeout=120
            ).status_code
        except httpx.HTTPError:
            return 0

    before = rss_mib(bridge)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(BIG_BODIES) as pool:
        answers = list(pool.map(send, range(BIG_BODIES)))
    wall = time.perf_counter() - t0
    after = rss_mib(bridge)
    time.sleep(settle_s)
    who = "with a key" if key else "without a key"
    print(
        f"  {BIG_BODIES} x {BIG_BODY // 2**20} MB {who}: answers {sorted(set(answers))} in"
        f" {wall:.1f} s; bridge RSS {before:.1f} -> {after:.1f} MiB, {rss_mib(bridge):.1f} MiB"
        f" {settle_s:g} s later"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="steady phase (600)")
    parser.add_argument("--rate", type=float, default=1.0, help="requests a second (1)")
    parser.add_argument("--every", type=float, default=15.0, help="seconds between RSS lines")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps, a preview each")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (64)")
    parser.add_argument("--settle", type=float, default=30.0, help="seconds after the bodies")
    parser.add_argument("--cache", type=Path, default=Path("data/test-models"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="genserve-soak-") as tmp_name:
        tmp = Path(tmp_name)
        models = models_file(tmp, "cpu", args.size, args.steps)
        inference, port, _ = start_inference(
            args.cache, tmp, models_file=models, extra_env={"OMP_NUM_THREADS": "1"}
        )
        bridge: Proc | None = None
        try:
            db_url = f"sqlite:///{tmp / 'soak.db'}"
            _, keys = new_keys(db_url, 1)
            env = {
                "GENSERVE_DATA_DIR": str(tmp / "data"),
                "DATABASE_URL": db_url,
                "GENSERVE_INFERENCE_TARGETS": f"127.0.0.1:{port}",
                "GENSERVE_KEY_SECRET": SECRET,
            }
            bridge, base = start_bridge(env, tmp)
            warm_up(base, keys[0])
            print(
                f"soak: {args.seconds:g} s at {args.rate:g}/s, {args.steps} steps with a preview"
                f" each, {args.size}x{args.size}; bridge RSS {rss_mib(bridge):.1f} MiB warm"
            )
            asyncio.run(steady(base, keys[0], bridge, args))
            print("big bodies to POST /api/v1/3d:")
            big_bodies(base, None, bridge, args.settle)
            big_bodies(base, keys[0], bridge, args.settle)
        finally:
            if bridge is not None:
                bridge.stop()
            inference.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
