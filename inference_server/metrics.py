"""Prometheus metrics of the inference server, served on an optional HTTP port."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector


class Metrics:
    """One set per server; a registry of its own keeps tests' servers apart.

    Besides the server's own series: the process (CPU seconds, resident memory,
    open files), Python's garbage collector and platform, and GPU memory per
    CUDA device where there is one.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.registry.register(GpuMemoryCollector())
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
            "Requests waiting in a device's queue (not counting the one running).",
            ["device"],
            registry=self.registry,
        )

        self.batch_rows = Histogram(
            "genserve_inference_batch_rows",
            "Images per batched pipeline call (requests merged by the device queue), by device.",
            ["device"],
            registry=self.registry,
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
        )
        self.batch_fills = Counter(
            "genserve_inference_batch_fills",
            "Batched calls that waited (batch_fill_ms) for as many rows as the model's last "
            "call had, by device and how the wait ended: filled, timed_out, or yielded (other "
            "work was waiting).",
            ["device", "outcome"],
            registry=self.registry,
        )

        self.model_loads = Counter(
            "genserve_inference_model_loads",
            "Models brought onto a device, by model and where from (disk, or cpu memory).",
            ["model", "source"],
            registry=self.registry,
        )
        self.model_evictions = Counter(
            "genserve_inference_model_evictions",
            "Models that left a device (for room, or idle), by model and where to "
            "(cpu memory, or unloaded).",
            ["model", "to"],
            registry=self.registry,
        )
        self.model_load_seconds = Histogram(
            "genserve_inference_model_load_seconds",
            "Seconds to bring a model onto its device, by where from (disk, or cpu memory).",
            ["source"],
            registry=self.registry,
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
        )

    def loaded(self, model: str, source: str, seconds: float) -> None:
        self.model_loads.labels(model, source).inc()
        self.model_load_seconds.labels(source).observe(seconds)

    def filled(self, device: str, outcome: str) -> None:
        self.batch_fills.labels(device, outcome).inc()

    def evicted(self, model: str, to: str) -> None:
        self.model_evictions.labels(model, to).inc()

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)


class GpuMemoryCollector(Collector):
    """``torch.cuda.memory_allocated`` and ``memory_reserved`` per device, when CUDA is there.

    Read from PyTorch's allocator at each scrape (no device synchronisation);
    nothing at all without CUDA, so a CPU server exposes no GPU series. Before
    this process has used CUDA the figures are 0: a scrape never creates a
    CUDA context (which would itself take memory on every device).
    """

    def collect(self) -> Iterator[GaugeMetricFamily]:
        import torch

        if not torch.cuda.is_available():
            return
        allocated = GaugeMetricFamily(
            "genserve_inference_gpu_memory_allocated_bytes",
            "GPU memory held by tensors, by CUDA device.",
            labels=["device"],
        )
        reserved = GaugeMetricFamily(
            "genserve_inference_gpu_memory_reserved_bytes",
            "GPU memory reserved by PyTorch's caching allocator, by CUDA device.",
            labels=["device"],
        )
        used = torch.cuda.is_initialized()
        for index in range(torch.cuda.device_count()):
            device = f"cuda:{index}"
            allocated.add_metric([device], float(torch.cuda.memory_allocated(index) if used else 0))
            reserved.add_metric([device], float(torch.cuda.memory_reserved(index) if used else 0))
        yield allocated
        yield reserved
