"""Inference unreachable or too slow: 503/504 in the envelope, row failed, points back."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from storage.db import make_engine, migrate
from storage.models import Account, Generation
from tests.conftest import Bridge, InferenceProc, bridge_env
from tests.utils.procs import free_port, start_bridge, start_inference

pytestmark = pytest.mark.server  # starts real servers (not in make test-fast)


def _bridge(tmp: Path, logs: Path, target: str, **extra: str) -> Bridge:
    db_url = f"sqlite:///{tmp / 'genserve.db'}"
    proc, base = start_bridge(bridge_env(tmp, db_url, target, **extra), logs, wait_healthy=False)
    engine = make_engine(db_url)
    migrate(engine)
    return Bridge(base=base, engine=engine, data_dir=tmp, proc=proc)


def _only_generation(bridge: Bridge) -> tuple[Generation, Account]:
    with Session(bridge.engine) as s:
        gen = s.exec(select(Generation)).one()
        account = s.get(Account, gen.account_id)
        assert account is not None
        return gen, account


def test_inference_down_is_503_before_any_debit(tmp_path: Path, logs: Path) -> None:
    """No server has listed its models yet: 503 before the debit, no row, no files."""
    bridge = _bridge(tmp_path, logs, f"127.0.0.1:{free_port()}")
    try:
        assert httpx.get(f"{bridge.base}/healthz").status_code == 200  # alive all the same
        ready = httpx.get(f"{bridge.base}/readyz")
        assert ready.status_code == 503
        assert ready.json()["code"] == "not_ready"
        assert ready.json()["details"] == [{"field": "inference", "message": "none of 1 serving"}]
        assert int(ready.headers["retry-after"]) > 0
        key = bridge.new_key(points=100)
        with bridge.client(key) as c:
            r = c.post("/api/v1/images", json={"prompt": "a", "num_images": 2})
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "inference_unavailable"
        assert int(r.headers["retry-after"]) > 0
        with Session(bridge.engine) as s:
            assert s.exec(select(Generation)).first() is None
            assert s.exec(select(Account)).one().points == 100
        assert not any(p.is_file() for p in (tmp_path / "blobs").rglob("*"))
    finally:
        bridge.proc.stop()


def test_server_that_dies_after_listing_costs_nothing(
    tmp_path: Path, logs: Path, model_cache: Path
) -> None:
    """A server the bridge knew goes away: 503, and any row it started is failed and refunded."""
    proc, port, _ = start_inference(model_cache, logs)
    bridge = _bridge(tmp_path, logs, f"127.0.0.1:{port}", GENSERVE_CATALOGUE_REFRESH_S="30")
    try:
        key = bridge.new_key(points=100)
        with bridge.client(key) as c:
            assert c.get("/api/v1/models").status_code == 200
            proc.stop(signal.SIGKILL)
            r = c.post("/api/v1/images", json={"prompt": "a", "num_images": 2})
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "inference_unavailable"
        with Session(bridge.engine) as s:
            assert all(g.status == "failed" for g in s.exec(select(Generation)).all())
            assert s.exec(select(Account)).one().points == 100
        assert not any(p.is_file() for p in (tmp_path / "blobs").rglob("*"))
    finally:
        proc.stop()
        bridge.proc.stop()


def test_deadline_is_504_and_refunded(tmp_path: Path, logs: Path, inference: InferenceProc) -> None:
    bridge = _bridge(tmp_path, logs, inference.target, GENSERVE_IMAGE_TIMEOUT_S="0.001")
    try:
        key = bridge.new_key(points=100)
        with bridge.client(key) as c:
            r = c.post("/api/v1/images", json={"prompt": "a"})
        assert r.status_code == 504, r.text
        assert r.json()["code"] == "generation_timeout"
        gen, account = _only_generation(bridge)
        assert gen.status == "failed"
        assert account.points == 100
    finally:
        bridge.proc.stop()


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_ok_with_serving_inference(bridge: Bridge, path: str) -> None:
    r = httpx.get(bridge.base + path)
    assert r.status_code == 200
    assert r.headers["x-request-id"].startswith("req_")


def test_generations_abandoned_by_a_dead_bridge_are_refunded(tmp_path: Path, logs: Path) -> None:
    """Rows whose bridge died are failed and refunded at start, their webhooks queued and
    their idempotency claims released: a lease that ran out (at once), and a row without a
    lease (from before leases) left pending past its deadline."""
    from datetime import timedelta

    from storage import idempotency, points
    from storage.accounts import create_account
    from storage.models import IdempotencyRecord, WebhookDelivery, utcnow

    db_url = f"sqlite:///{tmp_path / 'genserve.db'}"
    engine = make_engine(db_url)
    migrate(engine)
    hook = {"webhook_url": "https://hooks.example.test/genserve"}
    with Session(engine, expire_on_commit=False) as s:
        account = create_account(s, email=None, points=100)
        assert account.id is not None

        def pending(cost: int, **fields: object) -> Generation:
            gen = Generation(
                account_id=account.id, kind="image", model="nano-banana", points_cost=cost
            )
            for name, value in fields.items():
                setattr(gen, name, value)
            claim = idempotency.claim(
                s, account_id=account.id, key=f"k-{cost}", request_hash="h" * 64
            )
            points.start_generation(s, gen, claim_id=claim.record.id)
            return gen

        old = pending(8, params=dict(hook), request_id="req_old")
        lapsed = pending(
            16, params=dict(hook), owner="dead:1:x", lease_until=utcnow() - timedelta(seconds=1)
        )
        leased = pending(2, owner="alive:2:y", lease_until=utcnow() + timedelta(hours=1))
        fresh = pending(4)
        old.created_at = utcnow() - timedelta(hours=2)
        s.add(old)
        s.commit()
        assert points.balance(s, account.id) == 70
    bridge = _bridge(tmp_path, logs, f"127.0.0.1:{free_port()}")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with Session(engine) as s:
                statuses = [s.get(Generation, g.id).status for g in (old, lapsed)]  # type: ignore[union-attr]
                if statuses == ["failed", "failed"]:
                    break
            time.sleep(0.1)
        with Session(engine) as s:
            for gen in (old, lapsed):
                ended = s.get(Generation, gen.id)
                assert ended is not None
                assert ended.status == "failed" and ended.error_code == "generation_abandoned"
                deliveries = s.exec(
                    select(WebhookDelivery).where(WebhookDelivery.generation_id == gen.id)
                ).all()
                assert len(deliveries) == 1
                assert deliveries[0].url == hook["webhook_url"]
                assert deliveries[0].event == "generation.failed"
                payload = deliveries[0].payload
                assert payload["generation_id"] == gen.id and payload["success"] is False
                assert payload["code"] == "generation_abandoned"
                assert payload["request_id"] == ended.request_id
            for gen in (leased, fresh):  # a live lease, or within its deadline: may be running
                live = s.get(Generation, gen.id)
                assert live is not None and live.status == "pending"
            claims = s.exec(select(IdempotencyRecord.generation_id)).all()
            assert sorted(claims) == sorted([leased.id, fresh.id])  # the ended ones released
            assert points.balance(s, account.id) == 94 == points.ledger_sum(s, account.id)
    finally:
        bridge.proc.stop()
        engine.dispose()


def test_an_async_retry_after_a_crash_starts_afresh(
    tmp_path: Path, logs: Path, inference: InferenceProc
) -> None:
    """A 202 was answered, then its bridge died; another bridge abandoned and refunded the
    generation. The client's retry with the same Idempotency-Key runs again rather than
    replaying, for a day, the 202 of a generation that will never finish."""
    from datetime import timedelta

    from starlette.requests import Request

    from rest_bridge.generation.image import ImageRequest
    from rest_bridge.generation.respond import request_digest
    from storage import idempotency, points
    from storage.accounts import create_account, create_api_key
    from storage.models import utcnow
    from tests.conftest import KEY_SECRET

    db_url = f"sqlite:///{tmp_path / 'genserve.db'}"
    engine = make_engine(db_url)
    migrate(engine)
    body = {"prompt": "A lighthouse at dawn"}
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/images",
        "headers": [(b"prefer", b"respond-async")],
        "query_string": b"",
        "scheme": "http",
        "server": ("bridge", 80),
        "root_path": "",
    }
    digest = request_digest(Request(scope), ImageRequest(**body))  # type: ignore[arg-type]
    with Session(engine, expire_on_commit=False) as s:  # what the crashed bridge left
        account = create_account(s, email=None, points=100)
        assert account.id is not None
        key = create_api_key(
            s, account_id=account.id, secret=KEY_SECRET.encode(), name="retry"
        ).plaintext
        gen = Generation(
            account_id=account.id,
            kind="image",
            model="nano-banana",
            points_cost=4,
            owner="dead:1:x",
            lease_until=utcnow() - timedelta(seconds=1),
        )
        claim = idempotency.claim(s, account_id=account.id, key="retry-1", request_hash=digest)
        points.start_generation(s, gen, claim_id=claim.record.id)
        assert claim.record.id is not None
        idempotency.finish(
            s,
            claim.record.id,
            status_code=202,
            body={"success": True, "data": {"generation_id": gen.id, "status": "pending"}},
            generation_id=gen.id,
        )
    bridge = _bridge(tmp_path, logs, inference.target)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with Session(engine) as s:
                if s.get(Generation, gen.id).status == "failed":  # type: ignore[union-attr]
                    break
            time.sleep(0.1)
        with bridge.client(key) as c:
            assert c.get("/api/v1/account").json()["data"]["points"] == 100  # refunded
            headers = {"Prefer": "respond-async", "Idempotency-Key": "retry-1"}
            retry = c.post("/api/v1/images", json=body, headers=headers)
            assert retry.status_code == 202, retry.text
            assert "idempotent-replayed" not in retry.headers
            again = retry.json()["data"]["generation_id"]
            assert again != gen.id
            deadline = time.monotonic() + 60
            while c.get(f"/api/v1/generations/{again}").json()["data"]["status"] in (
                "pending",
                "running",
            ):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert c.get(f"/api/v1/generations/{again}").json()["data"]["status"] == "completed"
            replay = c.post("/api/v1/images", json=body, headers=headers)  # now it replays
            assert replay.headers["idempotent-replayed"] == "true"
            assert replay.json()["data"]["generation_id"] == again
    finally:
        bridge.proc.stop()
        engine.dispose()
