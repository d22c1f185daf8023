"""``make load``: a fixed request rate against a real bridge and inference server, on loopback.

Starts an inference server with a small built-in image model and a bridge on
SQLite (both on free loopback ports, in a temporary folder), warms them up,
then sends ``--rate`` image requests a second for ``--seconds`` seconds,
each on schedule whatever the answers do (an open loop), and prints:

- requests sent, answered by HTTP status, and lost (no answer: a timeout or a
  broken connection);
- the refused share: answers that declined the work instead of doing it, 429
  (rate limit or a braked client), 503 (overloaded, no inference server) and 402
  (not enough points), out of the requests sent;
- latency percentiles (p50, p95, p99, max) of the answered requests;
- the resident memory (``VmRSS`` from ``/proc``) of both processes after the
  warm-up and after the run;
- the database afterwards: every generation ended (none pending or running),
  and the balance equal to the ledger's sum.

The exit status is 1 when a request was lost, an answer was an error (any
status but 200 and the refusals), more than ``--max-refused`` of the requests
sent were refused (5 % by default: a run that was mostly refused measured the
refusals, not the rate), a row is still live or points do not add up.

Everything is bounded: at most ``rate x seconds`` requests, at most
``--max-in-flight`` at once (a tick that finds them all busy is counted as not
sent), each answered within ``--timeout`` seconds.

The inference server runs with one OpenMP thread (``--inference-threads``): on
a CPU the bridge and the load generator share, a team of one thread per core
spin-waits against them, and a 64x64 image took 0.35 to 1 s instead of 30 to
45 ms on the 2-core machine this was written on.

Run: ``python -m bench.load [--seconds 60] [--rate 4]``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlmodel import Session

from bench.stats import percentile
from storage import generations, points
from storage.accounts import create_account, create_api_key
from storage.db import make_engine, migrate
from tests.utils.procs import Proc, start_bridge, start_inference

SECRET = "load-secret-" + "z" * 40
MODEL = "nano-banana"
PRICE = 4  # points per image (GENSERVE_PRICE_IMAGE's default)
PER_KEY = 900  # requests per key: under the enterprise plan's 1,000 an hour
OPENING_POINTS = 10**9
WARM_UP = 3  # requests before the run, each a completed generation
# Answers that decline the work rather than do it or fail at it: the rate limits (429),
# the inference side out of capacity or unreachable (503) and the account's points (402).
REFUSED = frozenset({402, 429, 503})
MAX_REFUSED = 0.05


@dataclass
class Outcome:
    sent: int = 0
    not_sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())

    @property
    def refused(self) -> int:
        return sum(n for code, n in self.statuses.items() if code in REFUSED)

    @property
    def refused_share(self) -> float:
        """Refused answers out of the requests sent (0 when none was sent)."""
        return self.refused / self.sent if self.sent else 0.0

    @property
    def errors(self) -> Counter[int]:
        """Answers that are neither a generation (200) nor a refusal."""
        return Counter(
            {code: n for code, n in self.statuses.items() if code != 200 and code not in REFUSED}
        )


def rss_mib(proc: Proc) -> float:
    """The process's resident memory, from /proc (Linux)."""
    for line in Path(f"/proc/{proc.popen.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(proc: Proc) -> float:
    """CPU time (user and system) the process has used, from /proc (Linux)."""
    fields = Path(f"/proc/{proc.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat
    return ticks / os.sysconf("SC_CLK_TCK")


def models_file(folder: Path, device: str, size: int, steps: int) -> Path:
    path = folder / "models.toml"
    path.write_text(
        f"[models.{MODEL}]\n"
        'kind = "image"\nsource = "builtin:tiny-sdxl"\ndefault = true\n'
        f'device = "{device}"\nsteps = {steps}\nwidth = {size}\nheight = {size}\n'
    )
    return path


def new_keys(db_url: str, count: int) -> tuple[int, list[str]]:
    engine = make_engine(db_url)
    migrate(engine)
    with Session(engine, expire_on_commit=False) as s:
        account = create_account(s, email=None, plan="enterprise", points=OPENING_POINTS)
        assert account.id is not None
        keys = [
            create_api_key(s, account_id=account.id, secret=SECRET.encode(), name=f"load-{i}")
            for i in range(count)
        ]
    engine.dispose()
    return account.id, [k.plaintext for k in keys]


async def one_request(
    client: httpx.AsyncClient, key: str, n: int, limit_s: float, out: Outcome
) -> None:
    t0 = time.perf_counter()
    try:
        r = await client.post(
            "/api/v1/images",
            json={"prompt": f"load {n}", "aspect_ratio": "1:1"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=limit_s,
        )
    except httpx.HTTPError as exc:
        out.lost[type(exc).__name__] += 1
        return
    out.latencies.append(time.perf_counter() - t0)
    out.statuses[r.status_code] += 1


async def drive(
    base: str, keys: list[str], rate: float, seconds: float, max_in_flight: int, limit_s: float
) -> Outcome:
    """Sends on schedule (open loop), then waits for every answer."""
    out = Outcome()
    total = math.ceil(rate * seconds)
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    async with httpx.AsyncClient(base_url=base, limits=limits) as client:
        in_flight: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        for n in range(total):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= max_in_flight:
                out.not_sent += 1
                continue
            task = asyncio.create_task(one_request(client, keys[n // PER_KEY], n, limit_s, out))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            out.sent += 1
        if in_flight:
            await asyncio.wait(in_flight, timeout=limit_s + 5)
        for task in in_flight:  # past every request's own timeout: cannot happen
            task.cancel()
            out.lost["unfinished"] += 1
    return out


def warm_up(base: str, key: str, count: int = WARM_UP) -> None:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as c:
        for i in range(count):
            r = c.post("/api/v1/images", json={"prompt": f"warm {i}"}, timeout=120)
            r.raise_for_status()


def database_check(db_url: str, account_id: int) -> tuple[Counter[str], int, int]:
    """Generations by status, the balance and the ledger's sum."""
    engine = make_engine(db_url)
    with Session(engine) as s:
        counts = generations.status_counts(s, account_id)
        balance = points.balance(s, account_id)
        ledger = points.ledger_sum(s, account_id)
    engine.dispose()
    return Counter(counts), balance, ledger


def run(args: argparse.Namespace) -> int:
    total = math.ceil(args.rate * args.seconds)
    with tempfile.TemporaryDirectory(prefix="genserve-load-") as tmp_name:
        tmp = Path(tmp_name)
        models = models_file(tmp, args.device, args.size, args.steps)
        threads = {"OMP_NUM_THREADS": str(args.inference_threads)} if args.inference_threads else {}
        inference, port, _ = start_inference(args.cache, tmp, models_file=models, extra_env=threads)
        bridge: Proc | None = None
        try:
            db_url = f"sqlite:///{tmp / 'load.db'}"
            account_id, keys = new_keys(db_url, total // PER_KEY + 1)
            env = {
                "GENSERVE_DATA_DIR": str(tmp / "data"),
                "DATABASE_URL": db_url,
                "GENSERVE_INFERENCE_TARGETS": f"127.0.0.1:{port}",
                "GENSERVE_KEY_SECRET": SECRET,
            }
            bridge, base = start_bridge(env, tmp)
            warm_up(base, keys[-1])
            rss_before = rss_mib(bridge), rss_mib(inference)
            cpu_before = cpu_s(bridge), cpu_s(inference)
            print(
                f"load: {args.seconds:g} s at {args.rate:g}/s ({total} requests at most,"
                f" {args.max_in_flight} in flight at most) to {base}; {MODEL}"
                f" {args.size}x{args.size}, {args.steps} steps, {args.device}, intra-op threads"
                f" {args.inference_threads or 'default'}",
                flush=True,
            )
            t0 = time.perf_counter()
            out = asyncio.run(
                drive(base, keys, args.rate, args.seconds, args.max_in_flight, args.timeout)
            )
            wall = time.perf_counter() - t0
            rss_after = rss_mib(bridge), rss_mib(inference)
            cpu = cpu_s(bridge) - cpu_before[0], cpu_s(inference) - cpu_before[1]
            statuses, balance, ledger = database_check(db_url, account_id)
        finally:
            if bridge is not None:
                bridge.stop()
            inference.stop()
    report(out, wall, rss_before, rss_after, cpu, statuses, balance, ledger)
    problems = verdict(out, statuses, balance, ledger, args.max_refused)
    if problems:
        print("FAILED: " + "; ".join(problems))
        return 1
    print(f"OK: nothing lost, {out.refused_share:.1%} refused (at most {args.max_refused:.1%})")
    return 0


def report(
    out: Outcome,
    wall: float,
    rss_before: tuple[float, float],
    rss_after: tuple[float, float],
    cpu: tuple[float, float],
    statuses: Counter[str],
    balance: int,
    ledger: int,
) -> None:
    """Prints the run's figures; :func:`verdict` judges them."""
    ms = [v * 1000 for v in out.latencies]
    by_status = ", ".join(f"{code}: {n}" for code, n in sorted(out.statuses.items())) or "none"
    lost = sum(out.lost.values())
    live = statuses["pending"] + statuses["running"]
    print(f"sent          {out.sent} in {wall:.1f} s (not sent, all in flight: {out.not_sent})")
    print(f"answered      {out.answered} ({by_status}); {out.answered / wall:.2f}/s")
    print(f"lost          {lost} {dict(out.lost) if lost else ''}".rstrip())
    codes = "/".join(str(code) for code in sorted(REFUSED))
    print(f"refused       {out.refused} of {out.sent} sent ({out.refused_share:.1%}; {codes})")
    if ms:
        print(
            f"latency       p50 {percentile(ms, 0.5):.0f} ms  p95 {percentile(ms, 0.95):.0f} ms"
            f"  p99 {percentile(ms, 0.99):.0f} ms  max {max(ms):.0f} ms"
        )
    for name, before, after in (
        ("bridge", rss_before[0], rss_after[0]),
        ("inference", rss_before[1], rss_after[1]),
    ):
        print(
            f"RSS {name:10s}before {before:7.1f} MiB  after {after:7.1f} MiB"
            f"  ({after - before:+.1f} MiB)"
        )
    per = max(out.answered, 1)
    print(
        f"CPU           bridge {cpu[0] * 1000 / per:.0f} ms, inference {cpu[1] * 1000 / per:.0f} ms"
        f" a request ({cpu[0]:.1f} s + {cpu[1]:.1f} s in {wall:.1f} s)"
    )
    rows = ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))
    print(f"database      generations {sum(statuses.values())} ({rows}); live {live}")
    print(f"points        balance {balance}, ledger sum {ledger}")


def verdict(
    out: Outcome, statuses: Counter[str], balance: int, ledger: int, max_refused: float
) -> list[str]:
    """What went wrong in a run, one line each; empty when nothing did.

    ``statuses``: the account's generations by status afterwards (the warm-up's
    included); ``max_refused``: the largest share of the requests sent that may be
    refused (402, 429, 503) for the run to pass.
    """
    problems = []
    lost = sum(out.lost.values())
    live = statuses["pending"] + statuses["running"]
    if not out.sent:
        problems.append("no request was sent")
    if lost:
        problems.append(f"{lost} requests got no answer")
    if out.sent != out.answered + lost:
        problems.append("sent and answered do not add up")
    if out.refused_share > max_refused:
        problems.append(
            f"{out.refused} of {out.sent} requests refused ({out.refused_share:.1%},"
            f" more than {max_refused:.1%})"
        )
    errors = out.errors
    if errors:
        by_code = ", ".join(f"{code}: {n}" for code, n in sorted(errors.items()))
        problems.append(f"{sum(errors.values())} answers were errors ({by_code})")
    if live:
        problems.append(f"{live} generations still live")
    if balance != ledger:
        problems.append("the balance is not the ledger's sum")
    if statuses["completed"] != out.statuses[200] + WARM_UP:
        problems.append(
            f"{statuses['completed']} completed rows for {out.statuses[200]} answers"
            f" (+{WARM_UP} warm-up)"
        )
    if balance != OPENING_POINTS - PRICE * statuses["completed"]:
        problems.append("the balance is not the price of the completed generations")
    return problems


def share_arg(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to send (60)")
    parser.add_argument("--rate", type=float, default=4.0, help="requests a second (4)")
    parser.add_argument("--max-in-flight", type=int, default=64, help="bound on open requests")
    parser.add_argument("--timeout", type=float, default=120.0, help="per request, in seconds")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (64)")
    parser.add_argument(
        "--inference-threads",
        type=int,
        default=1,
        help="the inference server's OpenMP threads (1; 0: its default, one per core)",
    )
    parser.add_argument("--steps", type=int, default=2, help="denoising steps (2)")
    parser.add_argument("--cache", type=Path, default=Path("data/test-models"))
    parser.add_argument(
        "--max-refused",
        type=share_arg,
        default=MAX_REFUSED,
        help="largest share of the requests sent that may be refused (402, 429, 503) for the"
        f" run to pass, between 0 and 1 ({MAX_REFUSED})",
    )
    args = parser.parse_args()
    if not 0 < args.seconds <= 3600 or not 0 < args.rate <= 1000:
        parser.error("--seconds must be in (0, 3600] and --rate in (0, 1000]")
    if args.max_in_flight < 1 or args.timeout <= 0:
        parser.error("--max-in-flight must be at least 1 and --timeout positive")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
