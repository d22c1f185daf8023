"""Many bridges and many inference servers behave as one service.

Two inference servers serve overlapping model sets; two bridges share one
PostgreSQL database and Redis (rate limits, job events, cancels). The servers
run as processes on loopback ports (network namespaces need privileges the
test cannot count on; see docs/deployment.md).
"""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, func, select

from storage.db import make_engine, migrate
from storage.models import Account, ApiKey, Generation, PointsLedger
from tests.conftest import (
    KEY_SECRET,
    REDIS_URL,
    Bridge,
    InferenceProc,
    bridge_env,
    fresh_pg_database,
)
from tests.utils.procs import start_bridge, start_inference
from tests.utils.s3 import MotoS3, start_moto
from tests.utils.sse import SseEvent, read_events

pytestmark = pytest.mark.fleet

SHARED = """
[models.nano-banana]
kind = "image"
source = "builtin:tiny-sdxl"
default = true
width = 64
height = 64
steps = 2

[models.slow-banana]
kind = "image"
source = "builtin:tiny-sdxl"
width = 256
height = 256
steps = 200

[models.mid-banana]
kind = "image"
source = "builtin:tiny-sdxl"
width = 256
height = 256
steps = 60
"""

ONLY_FIRST = """
[models.first-only]
kind = "image"
source = "builtin:tiny-sdxl"
width = 64
height = 64
steps = 2
"""


BUCKET = "fleet-outputs"


@dataclass
class Fleet:
    servers: list[InferenceProc]
    bridges: list[Bridge]
    s3: MotoS3

    def balance(self, key: str) -> int:
        with Session(self.bridges[0].engine) as s:
            return s.get(Account, self.account_of(key)).points  # type: ignore[union-attr]

    def account_of(self, key: str) -> int:
        from storage.keys import hash_key

        with Session(self.bridges[0].engine) as s:
            row = s.exec(
                select(ApiKey).where(ApiKey.key_hash == hash_key(key, KEY_SECRET.encode()))
            ).one()
            return row.account_id

    def ledger_sum(self, key: str) -> int:
        with Session(self.bridges[0].engine) as s:
            total = s.exec(
                select(func.sum(PointsLedger.delta)).where(
                    PointsLedger.account_id == self.account_of(key)
                )
            ).one()
            return int(total or 0)

    def generations(self, key: str) -> list[Generation]:
        with Session(self.bridges[0].engine) as s:
            return list(
                s.exec(
                    select(Generation).where(Generation.account_id == self.account_of(key))
                ).all()
            )


def cancelled_rpcs(server: InferenceProc) -> float:
    body = httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("genserve_inference_requests_total{") and 'code="CANCELLED"' in line
    )


@pytest.fixture(scope="module")
def fleet(
    model_cache: Path, logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    databases = fresh_pg_database()
    pg_url = next(databases)
    tmp = tmp_path_factory.mktemp("fleet")
    s3_servers = start_moto(tmp)
    s3 = next(s3_servers)
    s3.create_bucket(BUCKET)
    servers = []
    for name, text in (("first", SHARED + ONLY_FIRST), ("second", SHARED)):
        models = tmp / f"{name}.toml"
        models.write_text(text)
        proc, port, metrics_port = start_inference(model_cache, logs, models_file=models)
        servers.append(InferenceProc(proc, port, metrics_port))
    targets = ",".join(s.target for s in servers)
    prefix = "genserve-fleet-" + secrets.token_hex(4)
    bridges = []
    for name in ("a", "b"):
        data_dir = tmp / f"bridge-{name}"
        data_dir.mkdir()
        env = bridge_env(
            data_dir,
            pg_url,
            targets,
            REDIS_URL=REDIS_URL,
            GENSERVE_RATELIMIT_PREFIX=prefix,
            GENSERVE_CATALOGUE_REFRESH_S="1",
            GENSERVE_SSE_HEARTBEAT_S="1",
            GENSERVE_BLOB_URL=f"s3://{BUCKET}/outputs",
            **s3.env,
        )
        proc, base = start_bridge(env, logs)
        bridges.append(Bridge(base, make_engine(pg_url), data_dir, proc))
    migrate(bridges[0].engine)
    yield Fleet(servers, bridges, s3)
    for bridge in bridges:
        bridge.proc.stop()
        bridge.engine.dispose()
    for server in servers:
        server.proc.stop()
    next(s3_servers, None)
    next(databases, None)


def test_requests_spread_over_both_servers(fleet: Fleet) -> None:
    before = [s.rpc_count() for s in fleet.servers]
    key = fleet.bridges[0].new_key(points=100, plan="enterprise")
    for i in range(6):
        with fleet.bridges[i % 2].client(key) as c:
            r = c.post("/api/v1/images", json={"prompt": f"spread {i}"})
            assert r.status_code == 200, r.text
    gained = [s.rpc_count() - b for s, b in zip(fleet.servers, before, strict=True)]
    assert sum(gained) == 6
    assert all(g >= 1 for g in gained), gained
    assert fleet.balance(key) == 100 - 6 * 4 == fleet.ledger_sum(key)


def test_a_model_served_by_one_server_always_lands_there(fleet: Fleet) -> None:
    first, second = fleet.servers
    before = (first.rpc_count(), second.rpc_count())
    key = fleet.bridges[0].new_key(points=100, plan="enterprise")
    for i in range(4):
        with fleet.bridges[i % 2].client(key) as c:
            r = c.post("/api/v1/images", json={"prompt": "only", "model": "first-only"})
            assert r.status_code == 200, r.text
    assert (first.rpc_count(), second.rpc_count()) == (before[0] + 4, before[1])
    with fleet.bridges[1].client(key) as c:
        names = {m["name"] for m in c.get("/api/v1/models").json()["data"]["models"]}
    assert names == {"nano-banana", "slow-banana", "mid-banana", "first-only"}


def _steps(events: list[SseEvent]) -> list[int]:
    return [
        int(e.data["step"])
        for e in events
        if e.name == "progress" and e.data["stage"] == "denoising"
    ]


def test_events_and_cancel_of_a_job_started_on_another_bridge(fleet: Fleet) -> None:
    a, b = fleet.bridges
    key = a.new_key(points=100, plan="enterprise")
    cancelled_before = sum(cancelled_rpcs(s) for s in fleet.servers)
    with a.client(key) as ca:
        r = ca.post(
            "/api/v1/images",
            json={"prompt": "far", "model": "slow-banana"},
            headers={"Prefer": "respond-async"},
        )
        assert r.status_code == 202, r.text
        gid = r.json()["data"]["generation_id"]
    seen: list[SseEvent] = []
    with b.client(key) as cb:
        with cb.stream("GET", f"/api/v1/generations/{gid}/events") as ev:
            for event in read_events(ev):
                seen.append(event)
                if event.name == "progress" and event.data.get("step", 0) >= 3:
                    break
        assert _steps(seen)[-3:] == [1, 2, 3]  # live steps from bridge A, streamed by B
        status = cb.get(f"/api/v1/generations/{gid}").json()["data"]
        assert status["status"] == "running" and status["progress"]["event"] == "progress"
        r = cb.post(f"/api/v1/generations/{gid}/cancel")
        assert r.status_code == 200, r.text
        body = r.json()["data"]
        assert body["status"] == "cancelled" and body["refunded_points"] == 4
        with cb.stream(
            "GET", f"/api/v1/generations/{gid}/events", headers={"Last-Event-ID": seen[-1].id or ""}
        ) as ev:
            rest = list(read_events(ev))
    assert rest[-1].name == "failed" and rest[-1].data["code"] == "generation_cancelled"
    last_step = max(_steps(seen + rest))
    assert last_step < 200
    assert last_step - body["step_at_cancel"] <= 1, (last_step, body)
    deadline = time.monotonic() + 10
    while sum(cancelled_rpcs(s) for s in fleet.servers) == cancelled_before:
        assert time.monotonic() < deadline, "the GPU work was never cancelled"
        time.sleep(0.1)
    assert fleet.balance(key) == 100 == fleet.ledger_sum(key)


def test_a_draining_server_finishes_its_work_and_is_skipped(
    fleet: Fleet, model_cache: Path, logs: Path, tmp_path: Path
) -> None:
    """SIGTERM: the server answers NOT_SERVING, finishes what it holds, and gets no new work."""
    first = fleet.servers[0]
    models = tmp_path / "third.toml"
    # Light enough to finish within the drain's grace period on a loaded machine.
    models.write_text(
        SHARED
        + '[models.third-only]\nkind = "image"\nsource = "builtin:tiny-sdxl"\n'
        + "width = 128\nheight = 128\nsteps = 40\n"
    )
    proc, port, metrics_port = start_inference(model_cache, logs, models_file=models)
    third = InferenceProc(proc, port, metrics_port)
    a = fleet.bridges[0]
    env = bridge_env(
        tmp_path,
        str(a.engine.url.render_as_string(hide_password=False)),
        f"{first.target},{third.target}",
        GENSERVE_CATALOGUE_REFRESH_S="0.5",
    )
    d_proc, d_base = start_bridge(env, logs)
    key = a.new_key(points=100, plan="enterprise")
    try:
        with httpx.Client(base_url=d_base, headers={"Authorization": f"Bearer {key}"}) as c:
            r = c.post(
                "/api/v1/images",
                json={"prompt": "held", "model": "third-only"},
                headers={"Prefer": "respond-async"},
            )
            assert r.status_code == 202, r.text
            gid = r.json()["data"]["generation_id"]
            deadline = time.monotonic() + 60
            while c.get(f"/api/v1/generations/{gid}").json()["data"]["status"] != "running":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            third.proc.popen.send_signal(signal.SIGTERM)
            time.sleep(1.5)  # three health checks of the bridge
            before = first.rpc_count()
            for i in range(3):
                r = c.post("/api/v1/images", json={"prompt": f"elsewhere {i}"}, timeout=120)
                assert r.status_code == 200, r.text
            assert first.rpc_count() == before + 3  # the draining server got none
            r = c.post("/api/v1/images", json={"prompt": "x", "model": "third-only"})
            assert r.status_code == 503 and r.json()["code"] == "inference_unavailable"
            deadline = time.monotonic() + 60
            while (status := c.get(f"/api/v1/generations/{gid}").json()["data"])["status"] in (
                "pending",
                "running",
            ):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert status["status"] == "completed"  # finished what it held
        assert third.proc.popen.wait(30) == 0
        assert fleet.balance(key) == 100 - 4 * 4 == fleet.ledger_sum(key)
    finally:
        d_proc.stop()
        third.proc.stop()


def _wait_all_ended(fleet: Fleet, key: str, count: int, timeout: float) -> list[Generation]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gens = fleet.generations(key)
        if len(gens) == count and all(g.status not in ("pending", "running") for g in gens):
            return gens
        time.sleep(0.2)
    raise TimeoutError([g.status for g in fleet.generations(key)])


def test_sigkill_of_one_server_mid_run_loses_no_point(
    fleet: Fleet, logs: Path, tmp_path: Path
) -> None:
    """Runs last: it kills the second server. Work it held is retried on the first."""
    a, b = fleet.bridges
    # A bridge that looks at its targets' health only once a minute: after the kill it
    # still believes the dead server serves, so its requests meet the refusal itself.
    env = bridge_env(
        tmp_path,
        str(a.engine.url.render_as_string(hide_password=False)),
        ",".join(s.target for s in fleet.servers),
        REDIS_URL=REDIS_URL,
        GENSERVE_CATALOGUE_REFRESH_S="60",
    )
    c_proc, c_base = start_bridge(env, logs)
    key = a.new_key(points=100, plan="enterprise")
    ids = []
    for i in range(4):
        with fleet.bridges[i % 2].client(key) as c:
            r = c.post(
                "/api/v1/images",
                json={"prompt": f"kill {i}", "model": "mid-banana"},
                headers={"Prefer": "respond-async"},
            )
            assert r.status_code == 202, r.text
            ids.append(r.json()["data"]["generation_id"])
    deadline = time.monotonic() + 60
    with a.client(key) as c:
        while not any(
            c.get(f"/api/v1/generations/{g}").json()["data"]["status"] == "running" for g in ids
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    fleet.servers[1].proc.stop(signal.SIGKILL)
    gens = _wait_all_ended(fleet, key, 4, timeout=240)
    statuses = [g.status for g in gens]
    assert set(statuses) <= {"completed", "failed"}, statuses
    completed = statuses.count("completed")
    assert fleet.balance(key) == 100 - 4 * completed == fleet.ledger_sum(key)
    with Session(a.engine) as s:
        for gen in gens:
            rows = s.exec(
                select(PointsLedger.reason).where(col(PointsLedger.generation_id) == gen.id)
            ).all()
            assert sorted(rows) == (["debit"] if gen.status == "completed" else ["debit", "refund"])
    stored = fleet.s3.objects(BUCKET, "outputs/")
    with b.client(key) as c:
        for g in gens:
            if g.status == "completed":
                data: dict[str, Any] = c.get(f"/api/v1/generations/{g.id}").json()["data"]
                url = data["images"][0]["url"]
                token_and_name = url.split("/files/", 1)[1]
                for bridge in fleet.bridges:  # any bridge serves any output from the bucket
                    r = httpx.get(f"{bridge.base}/files/{token_and_name}")
                    assert r.status_code == 200
                    assert r.content == stored[f"outputs/{token_and_name}"]
    for bridge in fleet.bridges:
        assert bridge.blob_files() == 0

    other = a.new_key(points=100, plan="enterprise")
    try:
        with httpx.Client(base_url=c_base, headers={"Authorization": f"Bearer {other}"}) as c:
            for i in range(2):  # one of them is routed to the dead server first
                r = c.post("/api/v1/images", json={"prompt": f"after {i}"}, timeout=120)
                assert r.status_code == 200, r.text
    finally:
        c_proc.stop()
    assert fleet.balance(other) == 100 - 2 * 4 == fleet.ledger_sum(other)
    assert "retrying on another target" in c_proc.log_path.read_text()
