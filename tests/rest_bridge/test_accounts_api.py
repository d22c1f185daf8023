"""GET /api/v1/account, points against real generations, bodies that try to set what they may not.

Every test ends where it started for the ledger: a balance always equals the
sum of its ledger rows, after concurrent, refused and failing generations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, col, func, select

from storage import points
from storage.accounts import key_owner
from storage.db import make_engine, migrate
from storage.keys import hash_key
from storage.models import Account, Generation, PointsLedger
from tests.conftest import KEY_SECRET, Bridge, InferenceProc, bridge_env
from tests.utils.procs import free_port, start_bridge


def _account_id(bridge: Bridge, key: str) -> int:
    with Session(bridge.engine) as s:
        found = key_owner(s, hash_key(key, KEY_SECRET.encode()))
        assert found is not None and found[1].id is not None
        return found[1].id


def _balance_and_ledger(bridge: Bridge, account_id: int) -> tuple[int, int]:
    with Session(bridge.engine) as s:
        return points.balance(s, account_id), points.ledger_sum(s, account_id)


def _generations(bridge: Bridge, account_id: int) -> list[Generation]:
    with Session(bridge.engine) as s:
        return list(s.exec(select(Generation).where(Generation.account_id == account_id)).all())


def _side_bridge(tmp: Path, logs: Path, target: str, **extra: str) -> Bridge:
    db_url = f"sqlite:///{tmp / 'genserve.db'}"
    proc, base = start_bridge(bridge_env(tmp, db_url, target, **extra), logs, wait_healthy=False)
    engine = make_engine(db_url)
    migrate(engine)
    return Bridge(base=base, engine=engine, data_dir=tmp, proc=proc)


@pytest.fixture
def side_bridges(tmp_path: Path, logs: Path) -> Iterator[list[Bridge]]:
    started: list[Bridge] = []
    yield started
    for b in started:
        b.proc.stop()
        b.engine.dispose()


def test_account_reports_plan_points_and_this_hours_window(bridge: Bridge) -> None:
    key = bridge.new_key(points=37, plan="pro")
    with bridge.client(key) as c:
        c.get("/api/v1/models")
        r = c.get("/api/v1/account")
    assert r.status_code == 200
    data = r.json()["data"]
    assert data == {
        "email": data["email"],
        "plan": "pro",
        "points": 37,
        "limit": 500,
        "remaining": 498,
        "reset": int(r.headers["x-ratelimit-reset"]),
    }
    assert data["remaining"] == int(r.headers["x-ratelimit-remaining"])


def test_models_show_their_prices(bridge: Bridge) -> None:
    key = bridge.new_key()
    with bridge.client(key) as c:
        models = c.get("/api/v1/models").json()["data"]["models"]
    by_kind = {m["kind"]: m["price"] for m in models if m["default"]}
    assert by_kind["image"]["points_per_image"] == 4
    assert "steps" in by_kind["image"]["rule"]  # more steps or pixels cost more
    assert by_kind["video"]["points_for_4s_720p"] == 10
    assert by_kind["3d"] == {"points": 20}


def test_configured_prices_are_shown_and_charged(
    tmp_path: Path, logs: Path, inference: InferenceProc, side_bridges: list[Bridge]
) -> None:
    bridge = _side_bridge(tmp_path, logs, inference.target, GENSERVE_PRICE_IMAGE="7")
    side_bridges.append(bridge)
    key = bridge.new_key(points=100)
    with bridge.client(key) as c:
        models = c.get("/api/v1/models").json()["data"]["models"]
        assert {m["price"]["points_per_image"] for m in models if m["kind"] == "image"} == {7}
        r = c.post("/api/v1/images", json={"prompt": "two boats", "num_images": 2})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["remaining_points"] == 86
    account_id = _account_id(bridge, key)
    assert _balance_and_ledger(bridge, account_id) == (86, 86)


def test_a_short_balance_is_402_before_any_rpc(bridge: Bridge, inference: InferenceProc) -> None:
    key = bridge.new_key(points=7)
    account_id = _account_id(bridge, key)
    rpcs = inference.rpc_count()
    with bridge.client(key) as c:
        r = c.post("/api/v1/images", json={"prompt": "a", "num_images": 2})
    assert r.status_code == 402
    body = r.json()
    assert body["code"] == "insufficient_points"
    assert "8" in body["error"] and "7" in body["error"]
    assert inference.rpc_count() == rpcs
    assert _generations(bridge, account_id) == []
    assert _balance_and_ledger(bridge, account_id) == (7, 7)


async def test_concurrent_generations_never_overdraw(bridge: Bridge) -> None:
    """20 points, 4 an image, 8 at once: exactly 5 are served, the rest 402."""
    key = bridge.new_key(points=20)
    account_id = _account_id(bridge, key)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=bridge.base, headers=headers, timeout=120) as c:
        responses = await asyncio.gather(
            *(c.post("/api/v1/images", json={"prompt": f"tree {i}"}) for i in range(8))
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 5 + [402] * 3, [r.text for r in responses]
    remaining = [r.json()["data"]["remaining_points"] for r in responses if r.status_code == 200]
    assert min(remaining) == 0 and all(0 <= v <= 16 and v % 4 == 0 for v in remaining)
    assert _balance_and_ledger(bridge, account_id) == (0, 0)
    gens = _generations(bridge, account_id)
    assert len(gens) == 5 and {g.status for g in gens} == {"completed"}


def test_remaining_points_is_the_balance_after_each_debit(bridge: Bridge) -> None:
    key = bridge.new_key(points=30)
    with bridge.client(key) as c:
        seen = [
            c.post("/api/v1/images", json={"prompt": "a", "num_images": n}).json()["data"][
                "remaining_points"
            ]
            for n in (1, 2, 3)
        ]
        assert c.get("/api/v1/account").json()["data"]["points"] == 6
    assert seen == [26, 18, 6]


async def test_failing_generations_are_refunded_exactly_once(
    tmp_path: Path, logs: Path, inference: InferenceProc, side_bridges: list[Bridge]
) -> None:
    """Inference unreachable (503, before any debit) and too slow (504), eight at once each."""
    down = _side_bridge(tmp_path / "down", logs, f"127.0.0.1:{free_port()}")
    slow = _side_bridge(tmp_path / "slow", logs, inference.target, GENSERVE_IMAGE_TIMEOUT_S="0.001")
    side_bridges.extend([down, slow])
    for bridge, status in ((down, 503), (slow, 504)):
        key = bridge.new_key(points=64)  # enough for all eight at once: none is refused
        account_id = _account_id(bridge, key)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=bridge.base, headers=headers, timeout=120) as c:
            responses = await asyncio.gather(
                *(c.post("/api/v1/images", json={"prompt": "a", "num_images": 2}) for _ in range(8))
            )
        assert [r.status_code for r in responses] == [status] * 8
        assert _balance_and_ledger(bridge, account_id) == (64, 64)
        gens = _generations(bridge, account_id)
        if bridge is down:  # no server has listed a model: refused before the debit
            assert gens == []
            continue
        assert len(gens) == 8 and {g.status for g in gens} == {"failed"}
        with Session(bridge.engine) as s:
            for gen in gens:
                rows = s.exec(
                    select(PointsLedger.reason, PointsLedger.delta).where(
                        PointsLedger.generation_id == gen.id
                    )
                ).all()
                assert sorted(rows) == [("debit", -8), ("refund", 8)]


@pytest.mark.parametrize(
    ("path", "base_body"),
    [
        ("/api/v1/images", {"prompt": "a"}),
        ("/api/v1/videos", {"prompt": "a"}),
        ("/api/v1/3d", {"image_url": "https://example.com/a.png"}),
    ],
)
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("points", 1_000_000),
        ("remaining_points", 1_000_000),
        ("plan", "enterprise"),
        ("account_id", 1),
        ("owner", "someone@example.test"),
        ("price", 0),
        ("points_cost", 0),
    ],
)
def test_bodies_cannot_set_points_plan_owner_or_price(
    bridge: Bridge, path: str, base_body: dict[str, object], field: str, value: object
) -> None:
    key = bridge.new_key(points=50)
    account_id = _account_id(bridge, key)
    with bridge.client(key) as c:
        r = c.post(path, json={**base_body, field: value})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "validation_error"
    assert field in {d["field"] for d in body["details"]}
    assert _balance_and_ledger(bridge, account_id) == (50, 50)
    assert _generations(bridge, account_id) == []
    with Session(bridge.engine) as s:
        account = s.get(Account, account_id)
        assert account is not None and account.plan == "free"


@pytest.mark.parametrize("method", ["PUT", "PATCH", "POST", "DELETE"])
def test_the_account_cannot_be_written_through_the_api(bridge: Bridge, method: str) -> None:
    key = bridge.new_key(points=10)
    account_id = _account_id(bridge, key)
    with bridge.client(key) as c:
        r = c.request(method, "/api/v1/account", json={"points": 1_000_000, "plan": "pro"})
    assert r.status_code == 405
    assert r.json()["code"] == "method_not_allowed"
    with Session(bridge.engine) as s:
        account = s.get(Account, account_id)
        assert account is not None and (account.points, account.plan) == (10, "free")


@pytest.mark.parametrize(
    "value",
    [
        b"Bearer " + b"x" * 10_000,
        b"Bearer gsk_\xff\xfe\xfd",
        b"Bearer\tgsk_abc",
        b"Bearer gsk_" + b"0" * 38 + b" extra",
        b"Basic dXNlcjpwYXNz",
        b"Token abc",
        b"Bearer,gsk_abc",
    ],
)
def test_odd_authorization_headers_are_401_never_500(bridge: Bridge, value: bytes) -> None:
    r = httpx.get(bridge.base + "/api/v1/account", headers={"Authorization": value})
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_api_key"


def test_the_scheme_is_case_insensitive(bridge: Bridge) -> None:
    key = bridge.new_key()
    r = httpx.get(bridge.base + "/api/v1/account", headers={"Authorization": f"bearer {key}"})
    assert r.status_code == 200


def test_keys_never_reach_the_logs(bridge: Bridge) -> None:
    key = bridge.new_key()
    with bridge.client(key) as c:
        assert c.get("/api/v1/account").status_code == 200
    for name in ("api_key", "token", "key"):
        r = httpx.get(f"{bridge.base}/api/v1/projects", params={name: key})
        assert r.status_code == 401
    log = bridge.proc.log_path.read_text(errors="replace")
    assert key not in log
    assert key[4:] not in log
    # The access log names the route's template, never the query string that held the key.
    assert log.count('"route": "/api/v1/projects", "status": 401') >= 3


def test_every_balance_equals_its_ledger(bridge: Bridge) -> None:
    """Across every account this bridge has served so far, whatever the tests did to them."""
    with Session(bridge.engine) as s:
        ledger = (
            select(PointsLedger.account_id, func.sum(PointsLedger.delta).label("total"))
            .group_by(col(PointsLedger.account_id))
            .subquery()
        )
        rows = s.exec(
            select(Account.id, Account.points, func.coalesce(ledger.c.total, 0)).outerjoin(
                ledger, ledger.c.account_id == col(Account.id)
            )
        ).all()
    assert rows
    mismatched = [(i, balance, total) for i, balance, total in rows if balance != total]
    assert mismatched == []
    assert all(balance >= 0 for _, balance, _ in rows)
