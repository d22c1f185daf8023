"""What an operator sees: JSON log lines joined by request id, quiet start-ups, metrics.

Real processes: the session's inference server and SQLite bridge, and bridges of
these tests' own where a setting differs. Log files are read as the processes
wrote them, one line at a time.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from genserve.inference.v1 import inference_pb2 as pb
from genserve.inference.v1 import inference_pb2_grpc as pb_grpc
from rest_bridge.app import create_app
from tests.conftest import Bridge, InferenceProc, bridge_env
from tests.utils.procs import Proc, free_port, start_bridge
from tests.utils.web import WebUser

FIELDS = {"time", "level", "logger", "message", "request_id"}
DELIBERATE_WARNINGS = ("rate limits: REDIS_URL is unset",)  # actionable: set REDIS_URL
NOISE = re.compile(r"FutureWarning|UserWarning|DeprecationWarning|it/s\]|\d+%\||\[transformers\]")


def json_lines(proc: Proc) -> list[dict[str, Any]]:
    """Every line of the process's log as JSON (a line that is not fails the test)."""
    entries = []
    text = proc.log_path.read_text()
    lines = text.split("\n")[:-1]  # the last piece is a line still being written (or "")
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"{proc.log_path.name} line {number} is not JSON: {line[:300]}")
        assert isinstance(entry, dict) and FIELDS <= set(entry), line
        entries.append(entry)
    return entries


def until(found: Callable[[], list[dict[str, Any]]], timeout: float = 10.0) -> list[dict[str, Any]]:
    """Lines are written when the work ends, which may be just after the answer."""
    deadline = time.monotonic() + timeout
    while not (lines := found()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return lines


def sample(text: str, name: str, **labels: str) -> float:
    """One Prometheus sample (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def scrape(base: str) -> str:
    r = httpx.get(f"{base}/metrics", timeout=10)  # no key
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return r.text


def start_up(entries: list[dict[str, Any]], last: str) -> list[dict[str, Any]]:
    """The lines up to and including the one whose message starts with ``last``."""
    for index, entry in enumerate(entries):
        if entry["message"].startswith(last):
            return entries[: index + 1]
    pytest.fail(f"no line starting {last!r}")


@pytest.mark.parametrize("bridge", ["sqlite"], indirect=True)
def test_one_request_id_joins_both_logs_and_secrets_stay_out(
    bridge: Bridge, inference: InferenceProc
) -> None:
    key = bridge.new_key(points=100)
    with bridge.client(key) as c:
        r = c.post("/api/v1/images", json={"prompt": "a lighthouse", "num_images": 1})
    assert r.status_code == 200, r.text
    rid = r.headers["x-request-id"]
    assert r.json()["data"]["request_id"] == rid
    # A key in the query string is refused; it must not be logged either.
    assert httpx.get(f"{bridge.base}/api/v1/account", params={"api_key": key}).status_code == 401
    with WebUser(bridge.base) as user:
        assert user.signup().status_code in (200, 303)
        password = user.password

    access = until(
        lambda: [
            e
            for e in json_lines(bridge.proc)
            if e["request_id"] == rid and e["logger"] == "rest_bridge.access"
        ]
    )
    assert len(access) == 1
    line = access[0]
    assert (line["level"], line["method"], line["route"], line["status"]) == (
        "INFO",
        "POST",
        "/api/v1/images",
        200,
    )
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    rpc = until(lambda: [e for e in json_lines(inference.proc) if e["request_id"] == rid])
    assert any(e.get("rpc") == "GenerateImage" and e.get("code") == "OK" for e in rpc), rpc

    for proc in (bridge.proc, inference.proc):
        text = proc.log_path.read_text()
        assert key not in text and key[4:] not in text
        assert password not in text
    bridge_lines = json_lines(bridge.proc)
    assert any(e.get("route") == "/api/v1/account" and e["status"] == 401 for e in bridge_lines)
    assert not any("/healthz" in e["message"] or "/readyz" in e["message"] for e in bridge_lines)


def test_a_cancelled_rpc_logs_no_error(inference: InferenceProc) -> None:
    """A client that goes away mid-run: the job is withdrawn, nothing logged at ERROR for it."""
    with grpc.insecure_channel(inference.target) as channel:
        stream = pb_grpc.InferenceServiceStub(channel).GenerateImage(
            pb.GenerateImageRequest(prompt="gone", num_images=4, steps=50),
            metadata=(("x-request-id", "req_cancelled_by_test"),),
        )
        assert next(stream).WhichOneof("event") == "progress"  # queued: the work is under way
        stream.cancel()
    lines = until(
        lambda: [
            e for e in json_lines(inference.proc) if e["request_id"] == "req_cancelled_by_test"
        ]
    )
    assert [e["code"] for e in lines if "rpc" in e] == ["CANCELLED"]
    time.sleep(1.0)  # the device stops at its next step; the outcome is dropped after
    text = inference.proc.log_path.read_text()
    assert "never retrieved" not in text


@pytest.mark.parametrize("bridge", ["sqlite"], indirect=True)
def test_start_up_says_nothing_an_operator_cannot_act_on(
    bridge: Bridge, inference: InferenceProc
) -> None:
    """No library notices, deprecations, progress bars or warnings but deliberate ones."""
    served = start_up(json_lines(inference.proc), "inference server ready")
    bridged = start_up(json_lines(bridge.proc), "Application startup complete")
    for entries in (served, bridged):
        warnings = [
            e
            for e in entries
            if e["level"] not in ("DEBUG", "INFO")
            and not e["message"].startswith(DELIBERATE_WARNINGS)
        ]
        assert warnings == []
        assert not [e for e in entries if NOISE.search(e["message"])]
    assert any(e["message"].startswith("model nano-banana ready") for e in served)


@pytest.mark.parametrize("bridge", ["sqlite"], indirect=True)
def test_metrics_move_with_the_work(bridge: Bridge, inference: InferenceProc) -> None:
    before = scrape(bridge.base)
    key = bridge.new_key(points=100)
    with bridge.client(key) as c:
        assert (
            c.post("/api/v1/images", json={"prompt": "a barn", "num_images": 1}).status_code == 200
        )
        assert c.get("/api/v1/generations/not-a-real-id").status_code == 404
    after = scrape(bridge.base)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    posted = {"method": "POST", "route": "/api/v1/images"}
    assert moved("genserve_http_requests_total", **posted, status="200") == 1
    assert moved("genserve_http_request_seconds_count", **posted) == 1
    assert (
        moved(
            "genserve_http_requests_total",
            method="GET",
            route="/api/v1/generations/{generation_id}",
            status="404",
        )
        == 1
    )
    assert moved("genserve_generations_total", kind="image", outcome="completed", code="ok") == 1
    assert moved("genserve_points_total", movement="debited") == 4
    assert moved("genserve_points_total", movement="refunded") == 0
    assert moved("genserve_inference_round_trip_seconds_count", method="GenerateImage", code="OK")
    assert sample(after, "process_resident_memory_bytes") > 0

    served = httpx.get(f"http://127.0.0.1:{inference.metrics_port}/metrics", timeout=10).text
    assert sample(served, "genserve_inference_queue_depth", device="cpu") == 0  # idle
    assert sample(served, "process_resident_memory_bytes") > 0
    import torch

    has_gpu_series = "genserve_inference_gpu_memory_allocated_bytes" in served
    assert has_gpu_series == torch.cuda.is_available()

    schema = create_app().openapi()
    assert "/metrics" not in schema["paths"] and "/readyz" in schema["paths"]


def test_failures_and_refunds_are_counted(
    tmp_path: Path, logs: Path, inference: InferenceProc
) -> None:
    """A generation past its deadline: failed with its code, debited and refunded."""
    db_url = f"sqlite:///{tmp_path / 'genserve.db'}"
    env = bridge_env(tmp_path, db_url, inference.target, GENSERVE_IMAGE_TIMEOUT_S="0.001")
    proc, base = start_bridge(env, logs)
    try:
        bridge = Bridge(base=base, engine=_engine(db_url), data_dir=tmp_path, proc=proc)
        with bridge.client(bridge.new_key(points=100)) as c:
            assert c.post("/api/v1/images", json={"prompt": "late"}).status_code == 504
        text = scrape(base)
        failed = {"kind": "image", "outcome": "failed", "code": "generation_timeout"}
        assert sample(text, "genserve_generations_total", **failed) == 1
        assert sample(text, "genserve_points_total", movement="debited") == 4
        assert sample(text, "genserve_points_total", movement="refunded") == 4
        code = {"method": "GenerateImage", "code": "DEADLINE_EXCEEDED"}
        assert sample(text, "genserve_inference_round_trip_seconds_count", **code) == 1
        ended = until(lambda: [e for e in json_lines(proc) if e.get("outcome") == "failed"])
        assert ended[0]["code"] == "generation_timeout" and ended[0]["request_id"].startswith(
            "req_"
        )
    finally:
        proc.stop()
        bridge.engine.dispose()


@pytest.mark.server
def test_text_logs_quiet_probes_and_refusals_counted(tmp_path: Path, logs: Path) -> None:
    """GENSERVE_LOG_FORMAT=text for a terminal; probes polled while not ready write no
    line; an address braked for bad keys is counted as a rate-limit refusal."""
    db_url = f"sqlite:///{tmp_path / 'genserve.db'}"
    env = bridge_env(
        tmp_path,
        db_url,
        f"127.0.0.1:{free_port()}",  # nobody there: never ready
        GENSERVE_LOG_FORMAT="text",
        GENSERVE_AUTH_FAILURE_LIMITS="2/day",  # no window boundary within the test
    )
    proc, base = start_bridge(env, logs, wait_healthy=False)
    try:
        for _ in range(3):
            assert httpx.get(f"{base}/readyz").status_code == 503
        bad = {"Authorization": "Bearer gsk_" + "x" * 38}
        statuses = [httpx.get(f"{base}/api/v1/account", headers=bad).status_code for _ in range(3)]
        assert statuses == [401, 401, 429]
        text = scrape(base)
        assert sample(text, "genserve_rate_limit_refusals_total", limit="address") == 1
        assert sample(text, "genserve_http_requests_total", route="/readyz", status="503") == 3
    finally:
        proc.stop()
    lines = proc.log_path.read_text().splitlines()
    pattern = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+ \[(req_\w+|-)\] .+")
    assert lines and all(pattern.fullmatch(line) for line in lines), lines[:5]
    assert not [line for line in lines if "/readyz" in line or "/healthz" in line]
    refused = [line for line in lines if "GET /api/v1/account 429" in line]
    assert len(refused) == 1 and " INFO rest_bridge.access [req_" in refused[0]


def _engine(db_url: str) -> Any:
    from storage.db import make_engine

    return make_engine(db_url)
