"""Hourly limits per key, their headers, exact counting over two processes, the auth brake."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from storage.accounts import key_owner, revoke_api_key, set_plan
from storage.keys import generate_key, hash_key
from tests.conftest import KEY_SECRET, Bridge, BridgePair, bridge_env
from tests.utils.procs import free_port, start_bridge

RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def _auth(key: str, address: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if address is not None:
        headers["X-Forwarded-For"] = address  # uvicorn trusts it from 127.0.0.1, as from a proxy
    return headers


def _address() -> str:
    """A client address of this test's own, so tests never share a brake."""
    return "10." + ".".join(str(secrets.randbelow(254) + 1) for _ in range(3))


def _window(r: httpx.Response) -> tuple[int, int, int]:
    return tuple(int(r.headers[h]) for h in RATE_HEADERS)  # type: ignore[return-value]


def test_headers_on_successes_and_on_errors(bridge: Bridge) -> None:
    key = bridge.new_key(points=0)
    before = int(time.time())
    with bridge.client(key) as c:
        ok = c.get("/api/v1/account")
        invalid = c.post("/api/v1/images", json={"prompt": "   "})  # 422
        short = c.post("/api/v1/images", json={"prompt": "a"})  # 402: no points
        broken = c.post("/api/v1/images", content=b"{not json")  # 400
        unknown = c.get("/api/v1/no-such-route")  # 404
        wrong_method = c.delete("/api/v1/account")  # 405
    expected = [(ok, 200), (invalid, 422), (short, 402), (broken, 400)]
    expected += [(unknown, 404), (wrong_method, 405)]
    for i, (r, status) in enumerate(expected):
        assert r.status_code == status, r.text
        limit, remaining, reset = _window(r)
        assert limit == 100
        assert remaining == 99 - i  # every request made with the key counts
        assert before < reset <= int(time.time()) + 3601
    assert short.json()["code"] == "insufficient_points"
    assert wrong_method.headers["allow"] == "GET"


@pytest.mark.parametrize(("plan", "limit"), [("free", 100), ("pro", 500), ("enterprise", 1000)])
def test_limit_follows_the_plan(bridge: Bridge, plan: str, limit: int) -> None:
    key = bridge.new_key(plan=plan)
    with bridge.client(key) as c:
        r = c.get("/api/v1/models")
    assert r.status_code == 200
    assert _window(r)[:2] == (limit, limit - 1)


def test_responses_without_a_valid_key_carry_no_limit(bridge: Bridge) -> None:
    for headers in ({}, _auth(generate_key())):
        r = httpx.get(bridge.base + "/api/v1/account", headers=headers)
        assert r.status_code == 401
        assert not any(h in r.headers for h in RATE_HEADERS)


def test_the_101st_request_of_the_hour_is_429(bridge: Bridge) -> None:
    key = bridge.new_key()
    other_key_of_someone_else = bridge.new_key()
    with bridge.client(key) as c:
        seen = [c.get("/api/v1/account") for _ in range(100)]
        over = c.get("/api/v1/account")
        over_post = c.post("/api/v1/images", json={"prompt": "a"})
    assert [r.status_code for r in seen] == [200] * 100
    assert [_window(r)[1] for r in seen] == list(range(99, -1, -1))
    assert seen[-1].json()["data"]["remaining"] == 0
    for r in (over, over_post):
        assert r.status_code == 429
        body = r.json()
        assert body == {
            "success": False,
            "error": body["error"],
            "code": "rate_limited",
            "request_id": r.headers["x-request-id"],
        }
        limit, remaining, reset = _window(r)
        assert (limit, remaining) == (100, 0)
        assert 0 < int(r.headers["retry-after"]) <= 3601
        assert reset >= int(time.time())
    with bridge.client(other_key_of_someone_else) as c:
        assert c.get("/api/v1/account").status_code == 200


def test_in_process_store_is_announced_at_start_up(bridge: Bridge) -> None:
    log = bridge.proc.log_path.read_text(errors="replace")
    assert "REDIS_URL is unset" in log
    assert "single bridge process" in log


async def test_exactly_100_of_150_concurrent_requests_over_two_processes(
    redis_bridges: BridgePair,
) -> None:
    key = redis_bridges.new_key()
    bases = [redis_bridges.first.base, redis_bridges.second.base]
    limits = httpx.Limits(max_connections=160)
    async with httpx.AsyncClient(timeout=60, limits=limits, headers=_auth(key)) as c:
        responses = await asyncio.gather(
            *(c.get(bases[i % 2] + "/api/v1/account") for i in range(150))
        )
        for base in bases:
            r = await c.get(base + "/api/v1/account")
            assert r.status_code == 429
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(ok) == 100 and len(refused) == 50, [r.status_code for r in responses]
    # each count was taken once: the remaining values are 99..0, each exactly once
    assert sorted(_window(r)[1] for r in ok) == list(range(100))
    assert all(_window(r)[1] == 0 for r in refused)
    assert {str(r.url).rsplit("/api", 1)[0] for r in ok} == set(bases)  # both processes served


def test_a_plan_change_moves_the_ceiling_and_keeps_the_count(redis_bridges: BridgePair) -> None:
    key = redis_bridges.new_key()
    for _ in range(3):
        r = httpx.get(redis_bridges.first.base + "/api/v1/models", headers=_auth(key))
    assert _window(r)[:2] == (100, 97)
    with Session(redis_bridges.engine) as s:
        found = key_owner(s, hash_key(key, KEY_SECRET.encode()))
        assert found is not None and found[1].id is not None
        assert set_plan(s, account_id=found[1].id, plan="pro")
    r = httpx.get(redis_bridges.second.base + "/api/v1/account", headers=_auth(key))
    assert r.status_code == 200
    assert _window(r)[:2] == (500, 496)
    assert r.json()["data"]["plan"] == "pro"


def test_failed_authentication_is_braked_per_address(redis_bridges: BridgePair) -> None:
    """Five failures a minute here (the pair's setting), counted across both processes."""
    attacker, bystander = _address(), _address()
    bases = [redis_bridges.first.base, redis_bridges.second.base]
    guesses = [generate_key() for _ in range(5)]
    for i, guess in enumerate(guesses):
        r = httpx.get(bases[i % 2] + "/api/v1/account", headers=_auth(guess, attacker))
        assert r.status_code == 401, r.text
    for base in bases:
        for headers in (_auth(generate_key(), attacker), _auth("nonsense", attacker)):
            blocked = httpx.get(base + "/api/v1/account", headers=headers)
            assert blocked.status_code == 429
            assert blocked.json()["code"] == "rate_limited"
            assert 0 < int(blocked.headers["retry-after"]) <= 60
            assert "x-ratelimit-limit" not in blocked.headers
        missing = httpx.get(base + "/api/v1/account", headers={"X-Forwarded-For": attacker})
        assert missing.status_code == 429
    # others are unaffected
    r = httpx.get(bases[1] + "/api/v1/account", headers=_auth(generate_key(), bystander))
    assert r.status_code == 401


def test_the_brake_never_refuses_a_valid_key(redis_bridges: BridgePair) -> None:
    """Clients behind one NAT or proxy: a bad client's brake leaves the others' keys working."""
    shared = _address()
    valid = redis_bridges.new_key()
    revoked = redis_bridges.new_key()
    with Session(redis_bridges.engine) as s:
        found = key_owner(s, hash_key(revoked, KEY_SECRET.encode()))
        assert found is not None and found[0].id is not None
        assert revoke_api_key(s, key_id=found[0].id)
    bases = [redis_bridges.first.base, redis_bridges.second.base]
    for i in range(5):
        r = httpx.get(bases[i % 2] + "/api/v1/account", headers=_auth(generate_key(), shared))
        assert r.status_code == 401
    for i, base in enumerate(bases):
        ok = httpx.get(base + "/api/v1/account", headers=_auth(valid, shared))
        assert ok.status_code == 200, ok.text
        assert _window(ok)[:2] == (100, 99 - i)  # counted as any request with the key
        # bad attempts from the address stay refused, all alike: unknown, revoked, malformed
        for key in (generate_key(), revoked, valid[:-1] + ("A" if valid[-1] != "A" else "B")):
            r = httpx.get(base + "/api/v1/account", headers=_auth(key, shared))
            assert r.status_code == 429, r.text
            assert r.json()["error"].startswith("Too many failed authentication attempts")


def test_an_ipv6_client_is_braked_by_its_64(redis_bridges: BridgePair) -> None:
    a, b = secrets.randbelow(0xFFFF), secrets.randbelow(0xFFFE)
    net = f"2001:db8:{a:x}:{b:x}"
    base = redis_bridges.first.base + "/api/v1/account"
    for host in range(1, 6):
        r = httpx.get(base, headers=_auth(generate_key(), f"{net}::{host}"))
        assert r.status_code == 401
    assert httpx.get(base, headers=_auth(generate_key(), f"{net}::beef")).status_code == 429
    neighbour = f"2001:db8:{a:x}:{b + 1:x}::1"  # the next /64
    assert httpx.get(base, headers=_auth(generate_key(), neighbour)).status_code == 401


def test_missing_header_is_not_a_guess(redis_bridges: BridgePair) -> None:
    address = _address()
    for _ in range(8):
        r = httpx.get(
            redis_bridges.first.base + "/api/v1/models", headers={"X-Forwarded-For": address}
        )
        assert r.status_code == 401


@pytest.mark.server
def test_unreachable_redis_stops_the_bridge_at_start_up(tmp_path: Path, logs: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    env = bridge_env(tmp_path, f"sqlite:///{tmp_path / 'g.db'}", "127.0.0.1:1", REDIS_URL=dead)
    with pytest.raises(RuntimeError, match="cannot be reached"):
        start_bridge(env, logs, wait_healthy=False)
