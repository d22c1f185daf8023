"""A bridge on a public address: stricter defaults, believed addresses, equal log-in work."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from rest_bridge.app import create_app
from rest_bridge.link.credentials import LinkSecurity, target_host
from rest_bridge.settings import BridgeSettings
from rest_bridge.web import routes
from tests.conftest import KEY_SECRET, bridge_env
from tests.utils.procs import free_port, start_bridge
from tests.utils.web import CSRF_FIELD, WebUser


@pytest.mark.server
def test_a_public_address_with_defaults_closes_sign_up_and_metrics(
    tmp_path: Path, logs: Path
) -> None:
    """Nothing chosen, listening on 0.0.0.0: sign-up closed, /metrics refused, said at start-up.

    And no proxy is believed: ``X-Forwarded-For`` from 127.0.0.1 names no other client,
    so three log-ins "from" three addresses meet one address's limit of two.
    """
    db_url = f"sqlite:///{tmp_path / 'genserve.db'}"
    env = bridge_env(
        tmp_path,
        db_url,
        f"127.0.0.1:{free_port()}",
        GENSERVE_TRUSTED_PROXIES="",
        GENSERVE_LOGIN_LIMITS="2/minute",
    )
    proc, base = start_bridge(env, logs, wait_healthy=False, host="0.0.0.0")
    try:
        assert "sign-up closed (GENSERVE_SIGNUP unset)" in proc.log()
        assert "/metrics refused until GENSERVE_METRICS_TOKEN is set" in proc.log()
        with WebUser(base) as user:
            page = user.http.get("/signup")
            assert "Sign-ups are closed" in page.text and "<form" not in page.text
        r = httpx.get(f"{base}/metrics")
        assert r.status_code == 403
        assert r.json()["code"] == "forbidden"
        statuses = []
        for n in range(3):
            with WebUser(base, address=f"203.0.113.{n + 1}") as user:
                statuses.append(user.login().status_code)
        assert statuses == [401, 401, 429]
    finally:
        proc.stop()


@pytest.mark.server
def test_a_metrics_token_guards_metrics_and_a_trusted_proxy_is_believed(
    tmp_path: Path, logs: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'genserve.db'}"
    env = bridge_env(
        tmp_path,
        db_url,
        f"127.0.0.1:{free_port()}",
        GENSERVE_METRICS_TOKEN="scrape-me",
        GENSERVE_LOGIN_LIMITS="2/minute",
    )
    proc, base = start_bridge(env, logs, wait_healthy=False)
    try:
        assert (
            "sign-up open (GENSERVE_SIGNUP unset), /metrics needs GENSERVE_METRICS_TOKEN"
            in proc.log()
        )
        assert httpx.get(f"{base}/metrics").status_code == 401
        wrong = httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert right.status_code == 200 and "genserve_http_requests_total" in right.text
        statuses = []
        for n in range(3):  # 127.0.0.1 is a configured proxy here: three clients
            with WebUser(base, address=f"203.0.113.{n + 1}") as user:
                statuses.append(user.login().status_code)
        assert statuses == [401, 401, 401]
    finally:
        proc.stop()


def test_an_unknown_email_costs_a_password_verification_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Log-in timing told which emails have accounts: the hash was skipped for unknown ones."""
    verified: list[str | None] = []
    real = routes.verify_password

    def counting(stored: str | None, password: str) -> bool:
        verified.append(stored)
        return real(stored, password)

    monkeypatch.setattr(routes, "verify_password", counting)
    settings = BridgeSettings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'genserve.db'}",
        inference_targets=f"127.0.0.1:{free_port()}",
        key_secret=KEY_SECRET,
    )
    with TestClient(create_app(settings), follow_redirects=False) as c:
        page = c.get("/login")
        found = CSRF_FIELD.search(page.text)
        assert found is not None
        form = {"csrf": found.group(1), "email": "nobody@example.test", "password": "x" * 12}
        r = c.post("/login", data=form)
    assert r.status_code == 401
    assert verified == [None]  # the dummy hash, as for a wrong password


def _settings(tmp_path: Path, **extra: object) -> BridgeSettings:
    return BridgeSettings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'genserve.db'}",
        key_secret=KEY_SECRET,
        **extra,  # type: ignore[arg-type]
    )


def test_a_plaintext_link_off_this_machine_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The service token would cross a network in clear: the bridge says so at start-up."""
    remote = f"192.0.2.1:{free_port()},127.0.0.1:{free_port()}"
    settings = _settings(tmp_path, inference_targets=remote, inference_token="t" * 32)
    with caplog.at_level(logging.WARNING, logger="rest_bridge"), TestClient(create_app(settings)):
        pass
    warned = [r.getMessage() for r in caplog.records if "plaintext" in r.getMessage()]
    assert len(warned) == 1
    assert "192.0.2.1" in warned[0] and "127.0.0.1" not in warned[0]
    assert "GENSERVE_INFERENCE_TOKEN" in warned[0] and "t" * 32 not in warned[0]


def test_loopback_and_tls_links_are_not_warned_about() -> None:
    plain = LinkSecurity(token="t")
    assert (
        plain.exposed_targets(["127.0.0.1:1", "[::1]:2", "localhost:3", "dns:///localhost:4"]) == []
    )
    assert plain.exposed_targets(["dns:///inference.svc:50051", "[2001:db8::1]:1"]) == [
        "dns:///inference.svc:50051",
        "[2001:db8::1]:1",
    ]
    assert LinkSecurity(root_certificates=b"ca").exposed_targets(["10.0.0.1:1"]) == []
    assert target_host("dns:///name:50051") == "name"
