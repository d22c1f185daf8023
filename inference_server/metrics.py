"""Prometheus metrics of the inference server, served on an optional HTTP port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class Metrics:
    """One set per server; a registry of its own keeps tests' servers apart."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "genserve_inference_requests",
            "Generation RPCs received, by method and final status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "genserve_inference_seconds",
            "Seconds from request to the end of the stream, by method.",
            ["method"],
            registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
        )
        self.queue_depth = Gauge(
            "genserve_inference_queue_depth",
            "Requests waiting in a device's queue.",
            ["device"],
            registry=self.registry,
        )

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
