"""The inference server's registry: process collectors always, GPU memory only with CUDA."""

from __future__ import annotations

import pytest
import torch
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from inference_server.metrics import Metrics


def _samples(metrics: Metrics) -> dict[tuple[str, str], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, s.labels.get("device", "")): float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_process_collectors_are_registered() -> None:
    names = {name for name, _ in _samples(Metrics())}
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total"} <= names
    assert any(name.startswith("python_gc_") for name in names)


def test_gpu_memory_per_device_when_cuda_is_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda i: 1000 * (i + 1))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda i: 4000 * (i + 1))
    samples = _samples(Metrics())
    assert samples[("genserve_inference_gpu_memory_allocated_bytes", "cuda:0")] == 1000
    assert samples[("genserve_inference_gpu_memory_allocated_bytes", "cuda:1")] == 2000
    assert samples[("genserve_inference_gpu_memory_reserved_bytes", "cuda:1")] == 8000


def test_a_scrape_never_starts_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the process has used CUDA the figures are 0, read without touching the devices."""

    def untouchable(index: int) -> int:
        raise AssertionError("a scrape must not initialise CUDA")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "memory_allocated", untouchable)
    monkeypatch.setattr(torch.cuda, "memory_reserved", untouchable)
    assert _samples(Metrics())[("genserve_inference_gpu_memory_allocated_bytes", "cuda:0")] == 0


def test_no_gpu_series_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not [name for name, _ in _samples(Metrics()) if "gpu" in name]
