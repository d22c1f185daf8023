"""The bridge's Prometheus metrics, served at ``/metrics`` (no key: protect it at the proxy).

One set per process (``METRICS``), in a registry of its own. Everything is
counted where it happens, in memory: a scrape reads counters and never the
database. Points are counted from the ledger rows this process commits, so
every debit and refund is seen, whichever path (a failed run, a cancel, a
sweep) wrote it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from sqlalchemy import event
from sqlalchemy.orm import Session, object_session

from rest_bridge.edge.errors import ApiError
from storage.models import PointsLedger

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
INFERENCE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800)
LEDGER_MOVEMENTS = {"debit": "debited", "refund": "refunded"}
_PENDING = "genserve_points_pending"


class BridgeMetrics:
    """The series an operator watches a bridge by."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.requests = Counter(
            "genserve_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "genserve_http_request_seconds",
            "Seconds from a request's arrival to the end of its answer, by method and route.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.generations = Counter(
            "genserve_generations",
            "Generations run by this bridge, by kind and outcome "
            "(completed, failed, cancelled) with the envelope code of a failure.",
            ["kind", "outcome", "code"],
            registry=self.registry,
        )
        self.points = Counter(
            "genserve_points",
            "Points debited for generations and refunded, as written to the ledger.",
            ["movement"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "genserve_rate_limit_refusals",
            "Requests refused with 429: a key over its hourly limit (key), "
            "or an address braked (address).",
            ["limit"],
            registry=self.registry,
        )
        self.inference = Histogram(
            "genserve_inference_round_trip_seconds",
            "Seconds of one generation RPC, from call to the stream's end, by method and code.",
            ["method", "code"],
            buckets=INFERENCE_BUCKETS,
            registry=self.registry,
        )

    def observe_request(
        self, method: str, route: str, status: int, seconds: float, scope_state: dict[str, Any]
    ) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
        if status == 429:
            window = scope_state.get("ratelimit")
            over_hourly = window is not None and not getattr(window, "allowed", True)
            self.rate_limited.labels("key" if over_hourly else "address").inc()

    @contextmanager
    def generation(self, kind: str, generation_id: str) -> Iterator[None]:
        """Counts (and logs) how the generation run inside ended."""
        started = time.perf_counter()
        outcome, code = "failed", "internal_error"
        try:
            yield
            outcome, code = "completed", "ok"
        except ApiError as err:
            outcome = "cancelled" if err.code == "generation_cancelled" else "failed"
            code = err.code
            raise
        except asyncio.CancelledError:
            outcome, code = "cancelled", "generation_cancelled"
            raise
        finally:
            self.generations.labels(kind, outcome, code).inc()
            log.info(
                "generation %s (%s) %s",
                generation_id,
                kind,
                outcome if outcome != "failed" else f"failed: {code}",
                extra={
                    "generation_id": generation_id,
                    "kind": kind,
                    "outcome": outcome,
                    "code": code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )


METRICS = BridgeMetrics()


def _ledger_row_written(_mapper: Any, _connection: Any, row: PointsLedger) -> None:
    movement = LEDGER_MOVEMENTS.get(row.reason)
    session = object_session(row)
    if movement is not None and session is not None:
        session.info.setdefault(_PENDING, []).append((movement, abs(row.delta)))


def _committed(session: Session) -> None:
    for movement, amount in session.info.pop(_PENDING, ()):
        METRICS.points.labels(movement).inc(amount)


def _rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)


def count_points() -> None:
    """Counts the debits and refunds of every ledger row this process commits (idempotent)."""
    if not event.contains(PointsLedger, "after_insert", _ledger_row_written):
        event.listen(PointsLedger, "after_insert", _ledger_row_written)
        event.listen(Session, "after_commit", _committed)
        event.listen(Session, "after_rollback", _rolled_back)
