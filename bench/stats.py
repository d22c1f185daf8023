"""Percentiles of benchmark samples; clients sending requests in bursts, and their tally."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

Send = Callable[[int], None]
"""Sends request number ``i`` and returns once it is answered."""


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0 to 1), interpolated between the nearest samples; NaN when empty."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class Tally:
    """Images made and the wall time they took, summed over rounds; each request's latency."""

    images: int = 0
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def add(self, images: int, wall: float, latencies: list[float]) -> None:
        self.images += images
        self.wall += wall
        self.latencies.extend(latencies)

    @property
    def per_second(self) -> float:
        return self.images / self.wall if self.wall else float("nan")

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 0.5) * 1000


def burst(send: Send, concurrency: int, per_client: int, tally: Tally) -> None:
    """``concurrency`` clients, each sending ``per_client`` requests one after another."""

    def client(c: int) -> list[float]:
        latencies = []
        for k in range(per_client):
            t0 = time.perf_counter()
            send(c * per_client + k)
            latencies.append(time.perf_counter() - t0)
        return latencies

    with ThreadPoolExecutor(concurrency) as pool:
        start = time.perf_counter()
        done = list(pool.map(client, range(concurrency)))
        wall = time.perf_counter() - start
    tally.add(concurrency * per_client, wall, [s for one in done for s in one])
