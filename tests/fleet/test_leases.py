"""A bridge that dies mid-job: another bridge ends its work, refunds it and sends its webhook.

Two bridges share one PostgreSQL database and Redis, with one inference server
behind them. Bridge A starts a slow job and is killed with SIGKILL; bridge B
must fail and refund it once its lease runs out (3 s here), queue its webhook,
and release its ``Idempotency-Key`` so a retry runs. A cancel sent to B for a
job whose bridge is gone ends it too, webhook included.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from genserve.webhooks import HEADER, verify
from storage.db import make_engine, migrate
from storage.models import (
    Account,
    ApiKey,
    Generation,
    IdempotencyRecord,
    WebhookDelivery,
    aware,
)
from tests.conftest import KEY_SECRET, REDIS_URL, Bridge, InferenceProc, bridge_env
from tests.conftest import fresh_pg_database as fresh_database
from tests.utils.hooks import Receiver, receiving
from tests.utils.procs import start_bridge, start_inference
from tests.utils.sse import read_events

pytestmark = pytest.mark.fleet

MODELS = """
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
width = 512
height = 512
steps = 200
"""

LEASE_S = 3.0


@dataclass
class Rig:
    pg_url: str
    inference: InferenceProc
    tmp: Path
    logs: Path
    redis_prefix: str
    started: list[Bridge] = field(default_factory=list)

    def bridge(self, name: str, **extra: str) -> Bridge:
        data_dir = self.tmp / f"{name}-{len(self.started)}"
        data_dir.mkdir()
        env = bridge_env(
            data_dir,
            self.pg_url,
            self.inference.target,
            REDIS_URL=REDIS_URL,
            GENSERVE_RATELIMIT_PREFIX=self.redis_prefix,
            GENSERVE_FETCH_ALLOW_LOOPBACK="true",
            GENSERVE_SSE_HEARTBEAT_S="1",
            **extra,
        )
        proc, base = start_bridge(env, self.logs)
        bridge = Bridge(base, make_engine(self.pg_url), data_dir, proc)
        self.started.append(bridge)
        return bridge

    def account_of(self, key: str) -> Account:
        from storage.keys import hash_key

        with Session(self.started[0].engine) as s:
            row = s.exec(
                select(ApiKey).where(ApiKey.key_hash == hash_key(key, KEY_SECRET.encode()))
            ).one()
            account = s.get(Account, row.account_id)
            assert account is not None
            return account

    def generations(self, account_id: int) -> list[Generation]:
        with Session(self.started[0].engine) as s:
            return list(
                s.exec(
                    select(Generation)
                    .where(Generation.account_id == account_id)
                    .order_by(Generation.created_at)  # type: ignore[arg-type]
                ).all()
            )

    def ledger_ok(self, account_id: int, expected: int) -> bool:
        from storage import points

        with Session(self.started[0].engine) as s:
            return points.balance(s, account_id) == expected == points.ledger_sum(s, account_id)

    def wait_row(self, generation_id: str, timeout: float) -> Generation:
        """The row once it has ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with Session(self.started[0].engine) as s:
                gen = s.get(Generation, generation_id)
                assert gen is not None
                if gen.status not in ("pending", "running"):
                    return gen
            time.sleep(0.1)
        raise TimeoutError(f"{generation_id} still live after {timeout}s")


@pytest.fixture(scope="module")
def rig(
    model_cache: Path, logs: Path, tmp_path_factory: pytest.TempPathFactory, redis_prefix: str
) -> Iterator[Rig]:
    databases = fresh_database()
    pg_url = next(databases)
    engine = make_engine(pg_url)
    migrate(engine)
    engine.dispose()
    tmp = tmp_path_factory.mktemp("leases")
    models = tmp / "models.toml"
    models.write_text(MODELS)
    proc, port, metrics_port = start_inference(model_cache, logs, models_file=models)
    rig = Rig(pg_url, InferenceProc(proc, port, metrics_port), tmp, logs, redis_prefix)
    yield rig
    for bridge in rig.started:
        bridge.proc.stop()
        bridge.engine.dispose()
    proc.stop()
    next(databases, None)


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    with receiving() as rec:
        yield rec


def _signed(receiver: Receiver, generation_id: str, secret: str) -> dict[str, object]:
    headers, payload = receiver.wait_for(generation_id, timeout=30)
    signature = next(v for k, v in headers.items() if k.lower() == HEADER.lower())
    raw = next(raw for h, raw in receiver.hits if h is headers)
    assert verify(secret, signature, raw)
    return payload


def test_a_killed_bridges_job_is_refunded_by_another_within_its_lease(
    rig: Rig, receiver: Receiver
) -> None:
    a = rig.bridge("a", GENSERVE_JOB_LEASE_S=str(LEASE_S))
    b = rig.bridge("b", GENSERVE_JOB_LEASE_S=str(LEASE_S))
    key = a.new_key(points=100, plan="enterprise")
    account = rig.account_of(key)
    assert account.id is not None
    body = {"prompt": "orphaned", "model": "slow-banana", "webhook_url": receiver.url}
    headers = {"Idempotency-Key": "orphan-1", "Accept": "text/event-stream"}
    with a.client(key) as ca:
        r = ca.send(
            ca.build_request("POST", "/api/v1/images", json=body, headers=headers), stream=True
        )
        assert r.status_code == 200
        events = read_events(r)  # kept open: a stream closed early cancels its job
        for event in events:
            if event.name == "progress" and event.data["stage"] == "denoising":
                break
        (gen,) = rig.generations(account.id)
        assert gen.status == "running" and gen.owner and gen.lease_until is not None
        first_lease = aware(gen.lease_until)
        # While A lives it renews the lease, and B leaves the job alone past several leases.
        deadline = time.monotonic() + 30
        while True:
            (gen,) = rig.generations(account.id)
            assert gen.status == "running", (gen.status, gen.error_code)
            assert gen.lease_until is not None
            if aware(gen.lease_until) >= first_lease + timedelta(seconds=2 * LEASE_S):
                break
            assert time.monotonic() < deadline, "the lease was never renewed"
            time.sleep(0.2)
        assert rig.ledger_ok(account.id, 96)
        killed_at = time.monotonic()
        a.proc.stop(signal.SIGKILL)
        with contextlib.suppress(httpx.HTTPError):  # the connection died with A
            r.close()
    ended = rig.wait_row(gen.id, timeout=60)
    took = time.monotonic() - killed_at
    assert ended.status == "failed" and ended.error_code == "generation_abandoned"
    assert took < LEASE_S + 10, took  # a lease and a sweep interval, with room for a busy CPU
    assert rig.ledger_ok(account.id, 100)
    payload = _signed(receiver, gen.id, account.webhook_secret)
    assert payload["event"] == "generation.failed"
    assert payload["code"] == "generation_abandoned" and payload["success"] is False
    assert payload["request_id"] == gen.request_id

    # The key's claim went with the job: the same request on B runs (no 409) ...
    with Session(b.engine) as s:
        assert s.exec(select(IdempotencyRecord)).all() == []
    with b.client(key) as cb:
        with cb.stream("POST", "/api/v1/images", json=body, headers=headers) as r:
            assert r.status_code == 200, r.read()
            # Held: a dropped reader closes the connection, and a closed stream cancels its job.
            retry_events = read_events(r)
            first = next(retry_events)
            assert first.name in ("queued", "progress")
            # ... and B, which runs it, cancels and refunds it.
            retry = next(g for g in rig.generations(account.id) if g.id != gen.id)
            cancelled = cb.post(f"/api/v1/generations/{retry.id}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            del retry_events
    assert rig.wait_row(retry.id, timeout=30).status == "cancelled"
    assert rig.ledger_ok(account.id, 100)


def test_cancel_of_a_job_whose_bridge_died_ends_it_and_sends_its_webhook(
    rig: Rig, receiver: Receiver
) -> None:
    a = rig.bridge("a")  # the default lease (30 s): the cancel ends it first
    b = rig.bridge("b")
    key = a.new_key(points=100, plan="enterprise")
    account = rig.account_of(key)
    assert account.id is not None
    with a.client(key) as ca:
        r = ca.post(
            "/api/v1/images",
            json={"prompt": "cut", "model": "slow-banana", "webhook_url": receiver.url},
            headers={"Prefer": "respond-async"},
        )
        assert r.status_code == 202, r.text
        gid = r.json()["data"]["generation_id"]
        deadline = time.monotonic() + 60
        while ca.get(f"/api/v1/generations/{gid}").json()["data"]["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    a.proc.stop(signal.SIGKILL)
    with b.client(key) as cb:
        r = cb.post(f"/api/v1/generations/{gid}/cancel")
    assert r.status_code == 200, r.text
    answer = r.json()["data"]
    assert answer["status"] == "cancelled" and answer["refunded_points"] == 4
    assert rig.ledger_ok(account.id, 100)
    payload = _signed(receiver, gid, account.webhook_secret)
    assert payload["event"] == "generation.failed"
    assert payload["code"] == "generation_cancelled"
    with Session(b.engine) as s:
        deliveries = s.exec(select(WebhookDelivery).where(WebhookDelivery.generation_id == gid))
        assert len(deliveries.all()) == 1
