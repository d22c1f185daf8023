"""No free lunch: sign-ups and log-ins limited per address, sign-ups that can be closed,
a cap on live keys per account, and no work for a caller who cannot pay.

The limits run on a bridge of their own whose counters are in Redis (as in production);
each test uses client addresses of its own (``X-Forwarded-For``, trusted from 127.0.0.1).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from storage.accounts import TooManyKeys, account_by_email, create_account, create_api_key
from storage.db import make_engine, migrate
from storage.models import Account, ApiKey, Generation
from tests.conftest import KEY_SECRET, REDIS_URL, Bridge, InferenceProc, bridge_env
from tests.rest_bridge import test_safe_fetch as fetch_tests
from tests.rest_bridge.test_3d_api import subject_photo
from tests.rest_bridge.test_accounts_cli import genserve
from tests.rest_bridge.test_safe_fetch import LoopbackServer, body_route
from tests.utils.procs import free_port, start_bridge
from tests.utils.web import WebUser, new_email

serve = fetch_tests.serve

SIGNUPS_PER_HOUR = 3
LOGINS_PER_MINUTE = 4
MAX_KEYS = 3


def _address() -> str:
    return "10.77." + ".".join(str(secrets.randbelow(250) + 1) for _ in range(2))


def _engine(db_url: str) -> Engine:
    engine = make_engine(db_url)
    migrate(engine)
    return engine


def _account(bridge: Bridge, email: str) -> Account | None:
    with Session(bridge.engine) as s:
        return account_by_email(s, email)


@pytest.fixture(scope="module")
def guarded(
    redis_prefix: str, tmp_path_factory: pytest.TempPathFactory, logs: Path
) -> Iterator[Bridge]:
    """Low limits, counted in Redis; no inference server behind it (none is needed here)."""
    data_dir = tmp_path_factory.mktemp("guarded")
    db_url = f"sqlite:///{data_dir / 'genserve.db'}"
    env = bridge_env(
        data_dir,
        db_url,
        f"127.0.0.1:{free_port()}",
        REDIS_URL=REDIS_URL,
        GENSERVE_RATELIMIT_PREFIX=redis_prefix,
        GENSERVE_SIGNUP_LIMITS=f"{SIGNUPS_PER_HOUR}/hour",
        GENSERVE_LOGIN_LIMITS=f"{LOGINS_PER_MINUTE}/minute",
        GENSERVE_MAX_KEYS_PER_ACCOUNT=str(MAX_KEYS),
    )
    proc, base = start_bridge(env, logs, wait_healthy=False)
    engine = _engine(db_url)
    yield Bridge(base=base, engine=engine, data_dir=data_dir, proc=proc)
    proc.stop()
    engine.dispose()


def _check_too_many(r: httpx.Response, what: str, longest: int) -> None:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert 0 < int(r.headers["retry-after"]) <= longest
    assert f"Too many {what} from this address" in r.text


# --- sign-ups and log-ins per address ------------------------------------------------------


def test_sign_ups_are_limited_per_address(guarded: Bridge, redis_prefix: str) -> None:
    address = _address()
    with WebUser(guarded.base, address) as typo:
        typo.password = "short"  # refused before any work: not counted
        assert typo.signup().status_code == 422
    for _ in range(SIGNUPS_PER_HOUR):
        with WebUser(guarded.base, address) as user:
            assert user.signup().status_code == 303
    with WebUser(guarded.base, address) as one_too_many:
        r = one_too_many.signup()
    _check_too_many(r, "sign-ups", 3600)
    assert _account(guarded, one_too_many.email) is None  # no account, no points
    with WebUser(guarded.base, _address()) as elsewhere:
        assert elsewhere.signup().status_code == 303
    # counted in the shared store, so every bridge on this Redis sees the same count
    client = redis.Redis.from_url(REDIS_URL)
    try:
        assert any(b"signups" in k for k in client.scan_iter(match=redis_prefix + "*"))
    finally:
        client.close()


def test_log_ins_are_limited_per_address_right_or_wrong(guarded: Bridge) -> None:
    with WebUser(guarded.base, _address()) as owner:
        assert owner.signup().status_code == 303
    address = _address()
    with WebUser(guarded.base, address) as user:
        user.email, user.password = owner.email, owner.password
        assert user.login(password="not the password").status_code == 401
        for _ in range(LOGINS_PER_MINUTE - 1):
            assert user.login().status_code == 303
        r = user.login()  # the right password, past the limit
        _check_too_many(r, "log-in attempts", 60)
        assert "gs_session=" not in r.headers.get("set-cookie", "")
    with WebUser(guarded.base, _address()) as other_place:
        other_place.email, other_place.password = owner.email, owner.password
        assert other_place.login().status_code == 303


# --- sign-ups closed -------------------------------------------------------------------------


@pytest.mark.server
def test_closed_sign_ups_leave_account_creation_to_the_operator(tmp_path: Path, logs: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'genserve.db'}"
    env = bridge_env(tmp_path, db_url, f"127.0.0.1:{free_port()}", GENSERVE_SIGNUP="closed")
    proc, base = start_bridge(env, logs, wait_healthy=False)
    engine = _engine(db_url)
    try:
        with WebUser(base) as user:
            page = user.http.get("/signup")
            assert page.status_code == 200
            assert "Sign-ups are closed" in page.text and "<form" not in page.text
            login_page = user.http.get("/login")
            assert 'href="/signup"' not in login_page.text
            csrf = user.csrf("/login")  # a valid form token, so only the switch refuses
            r = user.http.post(
                "/signup", data={"csrf": csrf, "email": user.email, "password": user.password}
            )
            assert r.status_code == 403
            assert "Sign-ups are closed" in r.text
            with Session(engine) as s:
                assert s.exec(select(Account)).first() is None

            created = genserve(
                db_url,
                tmp_path,
                "accounts",
                "create",
                "--email",
                user.email,
                "--password-stdin",
                stdin=user.password + "\n",
            )
            assert created.returncode == 0, created.stderr
            assert user.login().status_code == 303
            assert user.keys_page().status_code == 200
    finally:
        proc.stop()
        engine.dispose()


@pytest.mark.server
def test_an_unknown_sign_up_switch_stops_the_bridge(tmp_path: Path, logs: Path) -> None:
    env = bridge_env(
        tmp_path, f"sqlite:///{tmp_path / 'g.db'}", "127.0.0.1:1", GENSERVE_SIGNUP="maybe"
    )
    with pytest.raises(RuntimeError, match="signup"):
        start_bridge(env, logs, wait_healthy=False)


# --- live keys per account -------------------------------------------------------------------


def test_live_keys_are_capped_on_the_settings_page_and_in_the_command(guarded: Bridge) -> None:
    with WebUser(guarded.base, _address()) as user:
        assert user.signup().status_code == 303
        assert f'<span id="max-keys">{MAX_KEYS}</span>' in user.keys_page().text
        ids = [user.new_key(f"key {i}")[0] for i in range(MAX_KEYS)]
        refused = user.create_key("one too many")
        assert refused.status_code == 409
        assert f"already has {MAX_KEYS} live keys" in refused.text
        assert 'id="new-key"' not in refused.text
        assert user.revoke(ids[0]).status_code == 303  # a revoked key frees its place
        _, key = user.new_key("replacement")
        assert (
            httpx.get(
                guarded.base + "/api/v1/account", headers={"Authorization": f"Bearer {key}"}
            ).json()["data"]["plan"]
            == "free"
        )
        assert user.create_key("still too many").status_code == 409

    db_url = guarded.engine.url.render_as_string(hide_password=False)
    cap = {"GENSERVE_MAX_KEYS_PER_ACCOUNT": str(MAX_KEYS)}
    over = genserve(db_url, guarded.data_dir, "keys", "create", "--email", user.email, **cap)
    assert over.returncode == 1
    assert f"already has {MAX_KEYS} live keys" in over.stderr
    assert f"genserve keys list --email {user.email}" in over.stderr
    assert "genserve keys revoke <id>" in over.stderr and "Traceback" not in over.stderr
    account = _account(guarded, user.email)
    assert account is not None
    with Session(guarded.engine) as s:
        live = s.exec(
            select(ApiKey).where(ApiKey.account_id == account.id, ApiKey.revoked_at == None)  # noqa: E711
        ).all()
    assert len(live) == MAX_KEYS


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_key_cap_holds_under_concurrent_creations(
    database: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db_url = (
        f"sqlite:///{tmp_path / 'keys.db'}"
        if database == "sqlite"
        else str(request.getfixturevalue("pg_url"))
    )
    engine = _engine(db_url)
    try:
        with Session(engine) as s:
            account = create_account(s, email=new_email(), points=0)
        assert account.id is not None
        outcomes: list[str] = []
        start = threading.Barrier(8)

        def create() -> None:
            start.wait()
            with Session(engine) as s:
                try:
                    create_api_key(
                        s, account_id=account.id or 0, secret=KEY_SECRET.encode(), name="race",
                        max_live=MAX_KEYS,
                    )  # fmt: skip
                    outcomes.append("created")
                except TooManyKeys:
                    outcomes.append("refused")

        threads = [threading.Thread(target=create) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["created"] * MAX_KEYS + ["refused"] * (8 - MAX_KEYS)
    finally:
        engine.dispose()


# --- no work before payment ------------------------------------------------------------------


@pytest.fixture(scope="module")
def fetching_bridge(
    inference: InferenceProc, tmp_path_factory: pytest.TempPathFactory, logs: Path
) -> Iterator[Bridge]:
    data_dir = tmp_path_factory.mktemp("bridge-fetching")
    db_url = f"sqlite:///{data_dir / 'genserve.db'}"
    env = bridge_env(data_dir, db_url, inference.target, GENSERVE_FETCH_ALLOW_LOOPBACK="true")
    proc, base = start_bridge(env, logs)
    engine = _engine(db_url)
    yield Bridge(base=base, engine=engine, data_dir=data_dir, proc=proc)
    proc.stop()
    engine.dispose()


def test_a_caller_who_cannot_pay_makes_the_bridge_fetch_nothing(
    fetching_bridge: Bridge, serve: Callable[..., LoopbackServer]
) -> None:
    server = serve({"/img.png": body_route(subject_photo()), "/gone.png": body_route(b"", 404)})
    for balance in (0, 19):  # a 3D model costs 20
        key = fetching_bridge.new_key(points=balance)
        with fetching_bridge.client(key) as c:
            for _ in range(3):
                r = c.post("/api/v1/3d", json={"image_url": server.url("/img.png")})
                assert r.status_code == 402, r.text
                body = r.json()
                assert body["code"] == "insufficient_points"
                assert body["error"] == f"This needs 20 points and the balance is {balance}."
    assert server.connections == 0 and server.paths() == []
    with Session(fetching_bridge.engine) as s:
        assert s.exec(select(Generation)).first() is None
    # With the points, the same request does fetch (here a 404, so no generation runs).
    key = fetching_bridge.new_key(points=20)
    with fetching_bridge.client(key) as c:
        r = c.post("/api/v1/3d", json={"image_url": server.url("/gone.png")})
    assert r.status_code == 422, r.text
    assert server.paths() == ["/gone.png"]
