"""Streaming, async jobs, cancellation, disconnects, idempotency, webhooks and admission."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from genserve.webhooks import HEADER, verify
from rest_bridge.edge.errors import ERROR_CODES
from storage.models import Account, Generation
from tests.conftest import Bridge, InferenceProc, bridge_env, fresh_pg_database
from tests.utils.hooks import Receiver, receiving
from tests.utils.procs import start_bridge, start_inference
from tests.utils.sse import SseEvent, read_events

pytestmark = pytest.mark.server  # starts real servers (not in make test-fast)

MODELS = """
[models.nano-banana]
kind = "image"
source = "builtin:tiny-sdxl"
default = true
width = 128
height = 128
steps = 4

[models.slow-banana]
kind = "image"
source = "builtin:tiny-sdxl"
width = 256
height = 256
steps = 200
"""


@dataclass
class JobRig:
    bridge: Bridge
    inference: InferenceProc

    def balance(self, key_account: int) -> int:
        with Session(self.bridge.engine) as s:
            account = s.get(Account, key_account)
            assert account is not None
            return account.points

    def generation(self, generation_id: str) -> Generation:
        with Session(self.bridge.engine) as s:
            gen = s.get(Generation, generation_id)
            assert gen is not None
            return gen

    def cancelled_rpcs(self) -> float:
        body = httpx.get(f"http://127.0.0.1:{self.inference.metrics_port}/metrics").text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in body.splitlines()
            if line.startswith("genserve_inference_requests_total{") and 'code="CANCELLED"' in line
        )


@pytest.fixture(scope="module")
def rig(
    model_cache: Path, logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JobRig]:
    # A database of its own: another bridge on the same one would also send its webhooks.
    databases = fresh_pg_database()
    pg_url = next(databases)
    tmp = tmp_path_factory.mktemp("jobs")
    models = tmp / "models.toml"
    models.write_text(MODELS)
    proc, port, metrics_port = start_inference(
        model_cache,
        logs,
        models_file=models,
        extra_env={"GENSERVE_INFERENCE_QUEUE_SIZE": "2"},
    )
    env = bridge_env(
        tmp,
        pg_url,
        f"127.0.0.1:{port}",
        GENSERVE_FETCH_ALLOW_LOOPBACK="true",
        GENSERVE_WEBHOOK_BACKOFF_S="0.2",
        GENSERVE_WEBHOOK_TIMEOUT_S="120",  # a hanging endpoint hangs for the whole test
        GENSERVE_SSE_HEARTBEAT_S="1",
    )
    bproc, base = start_bridge(env, logs)
    from storage.db import make_engine, migrate

    engine = make_engine(pg_url)
    migrate(engine)
    yield JobRig(Bridge(base, engine, tmp, bproc), InferenceProc(proc, port, metrics_port))
    bproc.stop()
    proc.stop()
    engine.dispose()
    next(databases, None)


def account_of(rig: JobRig, key: str) -> int:
    from storage.keys import hash_key
    from storage.models import ApiKey
    from tests.conftest import KEY_SECRET

    with Session(rig.bridge.engine) as s:
        row = s.exec(
            select(ApiKey).where(ApiKey.key_hash == hash_key(key, KEY_SECRET.encode()))
        ).one()
        return row.account_id


def wait_status(
    c: httpx.Client, generation_id: str, wanted: set[str], timeout: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = c.get(f"/api/v1/generations/{generation_id}").json()["data"]
        if data["status"] in wanted:
            return data
        time.sleep(0.1)
    raise TimeoutError(f"{generation_id} never reached {wanted}")


def test_server_sent_events(rig: JobRig) -> None:
    key = rig.bridge.new_key(points=100)
    with (
        rig.bridge.client(key) as c,
        c.stream(
            "POST",
            "/api/v1/images",
            json={"prompt": "streamed", "output_format": "webp"},
            headers={"Accept": "text/event-stream"},
        ) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = list(read_events(r))
    names = [e.name for e in events]
    assert names[-1] == "completed"
    assert "queued" in names
    steps = [
        e.data["step"] for e in events if e.name == "progress" and e.data["stage"] == "denoising"
    ]
    assert steps == [1, 2, 3, 4]
    assert all(
        e.data["total"] == 4
        for e in events
        if e.name == "progress" and e.data["stage"] == "denoising"
    )
    assert [int(e.id or 0) for e in events] == list(range(1, len(events) + 1))
    data = events[-1].data
    assert data["images"][0]["content_type"] == "image/webp"
    assert httpx.get(data["images"][0]["url"]).status_code == 200
    assert data["remaining_points"] == 96


def test_async_job_and_status(rig: JobRig) -> None:
    key = rig.bridge.new_key(points=100)
    with rig.bridge.client(key) as c:
        r = c.post("/api/v1/images", json={"prompt": "later"}, headers={"Prefer": "respond-async"})
        assert r.status_code == 202, r.text
        accepted = r.json()["data"]
        gid = accepted["generation_id"]
        assert r.headers["location"] == accepted["status_url"]
        assert accepted["status"] == "pending"
        done = wait_status(c, gid, {"completed", "failed"})
        assert done["status"] == "completed"
        assert done["images"][0]["url"].startswith(rig.bridge.base)
        assert done["generation_id"] == gid and done["remaining_points"] == 96
        with c.stream("GET", f"/api/v1/generations/{gid}/events") as ev:
            replay = list(read_events(ev))
        assert replay[-1].name == "completed"
        assert replay[-1].data["images"] == done["images"]


def test_event_stream_resumes_after_last_event_id(rig: JobRig) -> None:
    key = rig.bridge.new_key(points=100)
    with rig.bridge.client(key) as c:
        gid = c.post(
            "/api/v1/images",
            json={"prompt": "x", "model": "slow-banana"},
            headers={"Prefer": "respond-async"},
        ).json()["data"]["generation_id"]
        first: list[SseEvent] = []
        with c.stream("GET", f"/api/v1/generations/{gid}/events") as ev:
            for event in read_events(ev):
                first.append(event)
                if event.name == "progress" and event.data["step"] >= 3:
                    break
        last_id = first[-1].id
        assert last_id is not None
        resumed: list[SseEvent] = []
        with c.stream(
            "GET", f"/api/v1/generations/{gid}/events", headers={"Last-Event-ID": last_id}
        ) as ev:
            for event in read_events(ev):
                resumed.append(event)
                if len(resumed) >= 3:
                    break
        assert int(resumed[0].id or 0) == int(last_id) + 1
        assert resumed[0].name == "progress"
        c.post(f"/api/v1/generations/{gid}/cancel")
        wait_status(c, gid, {"cancelled"})


def test_cancel_stops_within_one_step_and_refunds(rig: JobRig) -> None:
    key = rig.bridge.new_key(points=100)
    account = account_of(rig, key)
    with rig.bridge.client(key) as c:
        gid = c.post(
            "/api/v1/images",
            json={"prompt": "x", "model": "slow-banana"},
            headers={"Prefer": "respond-async"},
        ).json()["data"]["generation_id"]
        assert rig.balance(account) == 96
        with c.stream("GET", f"/api/v1/generations/{gid}/events") as ev:
            for event in read_events(ev):
                if event.name == "progress" and event.data["step"] >= 5:
                    break
        r = c.post(f"/api/v1/generations/{gid}/cancel")
        assert r.status_code == 200, r.text
        body = r.json()["data"]
        assert body["status"] == "cancelled"
        assert body["refunded_points"] == 4
        with c.stream("GET", f"/api/v1/generations/{gid}/events") as ev:
            log = list(read_events(ev))
        assert log[-1].name == "failed" and log[-1].data["code"] == "generation_cancelled"
        steps = [
            e.data["step"] for e in log if e.name == "progress" and e.data["stage"] == "denoising"
        ]
        assert steps[-1] < 200
        assert steps[-1] - body["step_at_cancel"] <= 1, (steps[-1], body)
        again = c.post(f"/api/v1/generations/{gid}/cancel")
        assert again.status_code == 409
        # Looked up, it says the same code as its events, one of the error table's.
        error = c.get(f"/api/v1/generations/{gid}").json()["data"]["error"]
        assert error["code"] == "generation_cancelled"
        assert error["code"] in {e.code for e in ERROR_CODES}
    assert rig.balance(account) == 100
    assert rig.generation(gid).status == "cancelled"
    assert rig.generation(gid).error_code == "generation_cancelled"


def test_streaming_client_disconnect_cancels_and_refunds(rig: JobRig) -> None:
    key = rig.bridge.new_key(points=100)
    account = account_of(rig, key)
    cancelled_before = rig.cancelled_rpcs()
    gid = None
    with (
        rig.bridge.client(key) as c,
        c.stream(
            "POST",
            "/api/v1/images",
            json={"prompt": "x", "model": "slow-banana"},
            headers={"Accept": "text/event-stream"},
        ) as r,
    ):
        for event in read_events(r):
            if event.name == "progress" and event.data["step"] >= 2:
                break
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with Session(rig.bridge.engine) as s:
            gens = s.exec(select(Generation).where(Generation.account_id == account)).all()
        if gens and gens[0].status == "cancelled":
            gid = gens[0].id
            break
        time.sleep(0.1)
    assert gid is not None, "the generation was not cancelled"
    assert rig.balance(account) == 100
    deadline = time.monotonic() + 30
    while rig.cancelled_rpcs() <= cancelled_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rig.cancelled_rpcs() > cancelled_before


def test_synchronous_client_disconnect_cancels_and_refunds(rig: JobRig) -> None:
    key = rig.bridge.new_key(points=100)
    account = account_of(rig, key)
    with rig.bridge.client(key) as c, pytest.raises(httpx.ReadTimeout):
        c.post("/api/v1/images", json={"prompt": "x", "model": "slow-banana"}, timeout=1.5)
    deadline = time.monotonic() + 60
    status = None
    while time.monotonic() < deadline:
        with Session(rig.bridge.engine) as s:
            gen = s.exec(select(Generation).where(Generation.account_id == account)).first()
        status = gen.status if gen else None
        if status in ("cancelled", "completed", "failed"):
            break
        time.sleep(0.1)
    assert status == "cancelled"
    assert rig.balance(account) == 100


def test_idempotent_retry_while_the_first_runs_is_409(rig: JobRig) -> None:
    """The first request is still streaming (a slow model) when the retry arrives."""
    key = rig.bridge.new_key(points=100)
    account = account_of(rig, key)
    body = {"prompt": "once, slowly", "model": "slow-banana"}
    headers = {"Idempotency-Key": "order-slow", "Accept": "text/event-stream"}
    with rig.bridge.client(key) as c:
        with c.stream("POST", "/api/v1/images", json=body, headers=headers) as first:
            assert first.status_code == 200
            events = read_events(first)
            for event in events:
                if event.name == "progress" and event.data["stage"] == "denoising":
                    break
            retry = c.post("/api/v1/images", json=body, headers=headers)
            assert retry.status_code == 409, retry.text
            assert retry.json()["code"] == "idempotency_conflict"
            assert retry.headers["retry-after"] == "1"
            assert rig.balance(account) == 96  # one debit, the first request's
        # The first stream closed early: its job is cancelled and refunded, the key released.
        gens = _wait_generations_ended(rig, account, 1)
        assert [g.status for g in gens] == ["cancelled"]
        assert rig.balance(account) == 100
        again = c.post("/api/v1/images", json={"prompt": "once, slowly", "model": "nano-banana"})
        assert again.status_code == 200, again.text


def test_idempotent_retry_after_completion_replays(rig: JobRig) -> None:
    key = rig.bridge.new_key(points=100)
    account = account_of(rig, key)
    body = {"prompt": "once"}
    headers = {"Idempotency-Key": "order-42"}
    with rig.bridge.client(key) as c:
        first = c.post("/api/v1/images", json=body, headers=headers)
        assert first.status_code == 200, first.text
        assert "idempotent-replayed" not in first.headers
        assert rig.balance(account) == 96
        replay = c.post("/api/v1/images", json=body, headers=headers)
        assert replay.status_code == 200, replay.text
        assert replay.headers.get("idempotent-replayed") == "true"
        assert replay.json() == first.json()
        assert rig.balance(account) == 96  # no second debit
        other = c.post("/api/v1/images", json={**body, "prompt": "twice"}, headers=headers)
        assert other.status_code == 422
        assert other.json()["code"] == "validation_error"
        too_long = c.post("/api/v1/images", json=body, headers={"Idempotency-Key": "k" * 256})
        assert too_long.status_code == 400
    assert rig.balance(account) == 96
    with Session(rig.bridge.engine) as s:
        gens = s.exec(select(Generation).where(Generation.account_id == account)).all()
        assert [g.status for g in gens] == ["completed"]


def _wait_generations_ended(
    rig: JobRig, account: int, count: int, timeout: float = 60
) -> list[Generation]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Session(rig.bridge.engine) as s:
            gens = list(s.exec(select(Generation).where(Generation.account_id == account)).all())
        if len(gens) == count and all(g.status not in ("pending", "running") for g in gens):
            return gens
        time.sleep(0.1)
    raise TimeoutError("generations still live")


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    with receiving() as rec:
        yield rec


def test_webhook_is_signed_and_retried(rig: JobRig, receiver: Receiver) -> None:
    key = rig.bridge.new_key(points=100)
    account = account_of(rig, key)
    receiver.statuses = [500]  # the first attempt fails; the retry succeeds
    url = f"http://127.0.0.1:{receiver.port}/hook"
    with rig.bridge.client(key) as c:
        r = c.post("/api/v1/images", json={"prompt": "hooked", "webhook_url": url})
        assert r.status_code == 200, r.text
    deadline = time.monotonic() + 30
    while len(receiver.hits) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(receiver.hits) == 2
    with Session(rig.bridge.engine) as s:
        acct = s.get(Account, account)
        assert acct is not None
        secret = acct.webhook_secret
    for headers, raw in receiver.hits:
        signature = next(v for k, v in headers.items() if k.lower() == HEADER.lower())
        assert verify(secret, signature, raw)
        assert not verify(secret, signature, raw + b" ")
        assert not verify("wrong-secret", signature, raw)
    payload = json.loads(receiver.hits[-1][1])
    assert payload["event"] == "generation.completed"
    assert payload["data"] == r.json()["data"]


def test_a_hanging_endpoint_delays_only_its_own_account(rig: JobRig) -> None:
    """Account A's endpoint never answers; account B's webhook still arrives at once.

    Deliveries went out in batches of ten that waited for each other (up to the
    10 s timeout), so B's waited for A's. Now each is its own task, and A has at
    most ``IN_FLIGHT_PER_ACCOUNT`` (4) under way: its fifth and sixth wait.
    """
    key_a, key_b = rig.bridge.new_key(points=100), rig.bridge.new_key(points=100)
    account_a = account_of(rig, key_a)
    with receiving(hang=True) as dead, receiving() as alive:
        with rig.bridge.client(key_a) as c:
            for n in range(6):
                r = c.post("/api/v1/images", json={"prompt": f"a{n}", "webhook_url": dead.url})
                assert r.status_code == 200, r.text
        deadline = time.monotonic() + 30
        while len(dead.hits) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        with rig.bridge.client(key_b) as c:
            r = c.post("/api/v1/images", json={"prompt": "b", "webhook_url": alive.url})
            assert r.status_code == 200, r.text
        alive.wait_for(r.json()["data"]["generation_id"])
        with Session(rig.bridge.engine) as s:
            from storage.models import WebhookDelivery

            a_rows = s.exec(
                select(WebhookDelivery).where(WebhookDelivery.account_id == account_a)
            ).all()
        # B's arrived while every one of A's was still hanging, and A had four under way.
        assert len(a_rows) == 6
        assert [row.attempts for row in a_rows] == [0] * 6
        assert len(dead.hits) == 4


def test_webhook_url_checked_against_address_policy(bridge: Bridge) -> None:
    key = bridge.new_key(points=100)
    with bridge.client(key) as c:
        for url in (
            "http://127.0.0.1:9/hook",
            "http://169.254.169.254/latest",
            "ftp://example.com/x",
        ):
            r = c.post("/api/v1/images", json={"prompt": "x", "webhook_url": url})
            assert r.status_code == 422, r.text
            assert r.json()["details"][0]["field"] == "webhook_url"
        assert c.get("/api/v1/projects").json()["data"]["pagination"]["total"] == 0


def test_full_queue_answers_overloaded(rig: JobRig) -> None:
    """The server queues two behind the running one (queue size 2); the next is refused.

    Each request is sent once the previous one is where the bridge reports it
    (running, then queued at positions 1 and 2), so the outcome is exact.
    """
    key = rig.bridge.new_key(points=100)
    account = account_of(rig, key)

    def progress_of(c: httpx.Client, gid: str) -> dict[str, Any]:
        data: dict[str, Any] = c.get(f"/api/v1/generations/{gid}").json()["data"]
        return data

    with rig.bridge.client(key) as c:
        ids: list[str] = []

        def submit(i: int) -> str:
            r = c.post(
                "/api/v1/images",
                json={"prompt": f"q{i}", "model": "slow-banana"},
                headers={"Prefer": "respond-async"},
            )
            assert r.status_code == 202, r.text
            gid: str = r.json()["data"]["generation_id"]
            ids.append(gid)
            return gid

        def reaches(gid: str, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
            deadline = time.monotonic() + 60
            while True:
                data = progress_of(c, gid)
                if wanted(data):
                    return data
                assert data["status"] in ("pending", "running"), data
                assert time.monotonic() < deadline, data
                time.sleep(0.05)

        try:
            reaches(submit(0), lambda d: d["status"] == "running")
            for position in (1, 2):
                reaches(
                    submit(position),
                    lambda d, p=position: (d.get("progress") or {}).get("position") == p,
                )
            refused = reaches(submit(3), lambda d: d["status"] == "failed")
            assert refused["error"]["code"] == "overloaded", refused
            states = [progress_of(c, g)["status"] for g in ids]
            assert states == ["running", "pending", "pending", "failed"], states
        finally:
            for g in ids:
                c.post(f"/api/v1/generations/{g}/cancel")
            for g in ids:
                wait_status(c, g, {"cancelled", "failed", "completed"})
    assert rig.balance(account) == 100 - 4 * sum(
        1 for g in ids if rig.generation(g).status == "completed"
    )
