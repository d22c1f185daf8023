"""The web pages over HTTP: sign-up, sessions, CSRF, Settings → API Keys, log-in brake."""

from __future__ import annotations

import re
import secrets

import httpx
from sqlmodel import Session, select

from storage import points
from storage.accounts import account_by_email, list_api_keys
from storage.models import Account, ApiKey, WebSession
from tests.conftest import Bridge, BridgePair
from tests.utils.web import WebUser, new_email


def _cookie(r: httpx.Response, name: str) -> str:
    for header in r.headers.get_list("set-cookie"):
        if header.startswith(name + "="):
            return header
    raise AssertionError(f"no {name} cookie in {r.headers}")


def _account(bridge: Bridge, email: str) -> Account | None:
    with Session(bridge.engine) as s:
        return account_by_email(s, email)


def test_signup_makes_a_free_account_with_100_points_and_a_safe_session(bridge: Bridge) -> None:
    with WebUser(bridge.base) as user:
        form_page = user.http.get("/signup")
        form_cookie = _cookie(form_page, "gs_form").lower()
        assert "httponly" in form_cookie and "samesite=strict" in form_cookie
        r = user.signup()
        assert r.status_code == 303
        assert r.headers["location"] == "/settings/api-keys"
        cookie = _cookie(r, "gs_session").lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
        page = user.keys_page()
        assert page.status_code == 200
        assert user.email in page.text
        assert '<strong id="plan">Free</strong>' in page.text
        assert '<strong id="points">100</strong>' in page.text
        assert '<strong id="hourly-limit">100</strong>' in page.text
        assert "No API keys yet." in page.text
    account = _account(bridge, user.email)
    assert account is not None and account.id is not None
    assert account.password_hash is not None and account.password_hash.startswith("$argon2id$")
    assert user.password not in account.password_hash
    with Session(bridge.engine) as s:
        assert points.balance(s, account.id) == points.ledger_sum(s, account.id) == 100
        session_rows = s.exec(select(WebSession).where(WebSession.account_id == account.id)).all()
    # the cookie's token is not what the database keeps
    token = user.http.cookies.get("gs_session")
    assert token and all(row.token_hash != token for row in session_rows)


def test_pages_forbid_framing_caching_and_foreign_scripts(bridge: Bridge) -> None:
    with WebUser(bridge.base) as user:
        user.signup()
        for r in (user.http.get("/login"), user.keys_page()):
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["cache-control"] == "no-store"
            csp = r.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "script-src 'nonce-" in csp
            assert "form-action 'self'" in csp


def test_the_settings_page_needs_a_session(bridge: Bridge) -> None:
    r = httpx.get(bridge.base + "/settings/api-keys")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    forged = httpx.get(
        bridge.base + "/settings/api-keys", cookies={"gs_session": secrets.token_urlsafe(32)}
    )
    assert forged.status_code == 303


def test_forms_without_the_right_csrf_token_change_nothing(bridge: Bridge) -> None:
    email = new_email()
    with httpx.Client(base_url=bridge.base) as anonymous:
        no_token = anonymous.post("/signup", data={"email": email, "password": "x" * 12})
        anonymous.get("/signup")  # has the form cookie now, but sends a made-up token
        wrong = anonymous.post(
            "/signup", data={"csrf": "0" * 64, "email": email, "password": "x" * 12}
        )
    assert no_token.status_code == wrong.status_code == 403
    assert _account(bridge, email) is None

    with WebUser(bridge.base) as user, WebUser(bridge.base) as other:
        user.signup()
        other.signup()
        foreign_token = other.csrf("/settings/api-keys")
        for data in ({"name": "x"}, {"name": "x", "csrf": foreign_token}):
            r = user.http.post("/settings/api-keys", data=data)
            assert r.status_code == 403
        cross_site = user.http.post(
            "/settings/api-keys",
            data={"name": "x", "csrf": user.csrf("/settings/api-keys")},
            headers={"Origin": "https://evil.example"},
        )
        assert cross_site.status_code == 403
        account = _account(bridge, user.email)
        assert account is not None and account.id is not None
        with Session(bridge.engine) as s:
            assert list_api_keys(s, account.id) == []
        # log-out is a form too
        assert user.http.post("/logout", data={"csrf": foreign_token}).status_code == 403
        assert user.keys_page().status_code == 200


def test_a_new_key_is_shown_once_and_works_until_revoked(bridge: Bridge) -> None:
    with WebUser(bridge.base) as user:
        user.signup()
        created = user.create_key("ci runner")
        assert created.status_code == 303  # post/redirect/get: a reload creates nothing
        shown = user.keys_page()
        assert shown.headers["cache-control"] == "no-store"
        assert "it won't be shown again" in shown.text
        assert "gs_reveal" not in shown.headers.get("set-cookie", "") or (
            "Max-Age=0" in shown.headers["set-cookie"]
        )
        key_id, key = user.new_key("ci runner")
        later = user.keys_page()
        assert key not in later.text  # never shown again
        assert "won't be shown again" not in later.text
        assert f"{key[:8]}…{key[-4:]}" in later.text
        assert "ci runner" in later.text
        row = later.text[later.text.index(f'data-key-id="{key_id}"') :]
        assert re.search(r'class="key-last-used"><span class="muted">Never', row)

        with httpx.Client(base_url=bridge.base, headers={"Authorization": f"Bearer {key}"}) as api:
            r = api.get("/api/v1/account")
            assert r.status_code == 200
            assert r.json()["data"]["points"] == 100
            seen = user.keys_page().text
            row = seen[seen.index(f'data-key-id="{key_id}"') :]
            assert re.search(r'class="key-last-used"><time', row)
            assert '<td class="key-usage">1 / 100</td>' in row

            revoked = user.revoke(key_id)
            assert revoked.status_code == 303
            r = api.get("/api/v1/account")
            assert r.status_code == 401
            assert r.json()["code"] == "invalid_api_key"
            assert f'data-key-id="{key_id}"' not in user.keys_page().text
    with Session(bridge.engine) as s:
        stored = s.get(ApiKey, key_id)
        assert stored is not None and stored.revoked_at is not None
        assert key not in stored.key_hash


def test_another_accounts_key_cannot_be_revoked(bridge: Bridge) -> None:
    with WebUser(bridge.base) as owner, WebUser(bridge.base) as intruder:
        owner.signup()
        intruder.signup()
        key_id, key = owner.new_key()
        for target in (str(key_id), "999999999", "abc"):
            csrf = intruder.csrf("/settings/api-keys")
            r = intruder.http.post(f"/settings/api-keys/{target}/revoke", data={"csrf": csrf})
            assert r.status_code == 404
        r = httpx.get(bridge.base + "/api/v1/account", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200
        assert f'data-key-id="{key_id}"' not in intruder.keys_page().text


def test_log_out_ends_the_session_on_the_server_and_log_in_starts_a_new_one(
    bridge: Bridge,
) -> None:
    with WebUser(bridge.base) as user:
        user.signup()
        old = user.http.cookies.get("gs_session")
        r = user.logout()
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert user.http.cookies.get("gs_session") is None
        # the old cookie, replayed, is worthless
        replay = httpx.get(bridge.base + "/settings/api-keys", cookies={"gs_session": old or ""})
        assert replay.status_code == 303

        wrong = user.login(password="not the password")
        assert wrong.status_code == 401
        assert "The email or the password is not right." in wrong.text
        user_unknown = WebUser(bridge.base)
        with user_unknown:
            nobody = user_unknown.login()
        assert nobody.status_code == 401
        assert "The email or the password is not right." in nobody.text

        ok = user.login()
        assert ok.status_code == 303
        new = user.http.cookies.get("gs_session")
        assert new and new != old
        assert user.keys_page().status_code == 200


def test_forms_cannot_set_plan_points_or_owner(bridge: Bridge) -> None:
    with WebUser(bridge.base) as user:
        for field, value in (("plan", "enterprise"), ("points", "1000000")):
            r = user.signup(**{field: value})
            assert r.status_code == 422
            assert field in r.text
        assert _account(bridge, user.email) is None
        assert user.signup().status_code == 303
        for field, value in (("account_id", "1"), ("plan", "pro"), ("points", "5")):
            assert user.create_key(**{field: value}).status_code == 422
    account = _account(bridge, user.email)
    assert account is not None and account.id is not None
    assert (account.plan, account.points) == ("free", 100)
    with Session(bridge.engine) as s:
        assert list_api_keys(s, account.id) == []


def test_sign_up_refuses_bad_input_and_a_taken_email(bridge: Bridge) -> None:
    with WebUser(bridge.base) as user:
        user.password = "short"
        assert user.signup().status_code == 422
        user.email, user.password = "not-an-email", "long enough password"
        assert user.signup().status_code == 422
        user.email = new_email()
        assert user.signup().status_code == 303
    with WebUser(bridge.base) as twin:
        twin.email = user.email.upper()  # emails are compared without case
        r = twin.signup()
        assert r.status_code == 409
        assert "already exists" in r.text
    with Session(bridge.engine) as s:
        rows = s.exec(select(Account).where(Account.email == user.email)).all()
    assert len(rows) == 1


def test_failed_log_ins_share_the_brake_with_bad_keys(redis_bridges: BridgePair) -> None:
    """Five failures a minute per address on the pair, across both processes."""
    address = "10.200." + ".".join(str(secrets.randbelow(250) + 1) for _ in range(2))
    first, second = redis_bridges.first.base, redis_bridges.second.base
    with WebUser(first, address) as user:
        user.signup()
        for _ in range(3):
            assert user.login(password="wrong password").status_code == 401
    with WebUser(second, address) as again:
        again.email, again.password = user.email, user.password
        assert again.login(password="wrong password").status_code == 401
        bad_key = {"Authorization": "Bearer gsk_nonsense", "X-Forwarded-For": address}
        assert httpx.get(second + "/api/v1/models", headers=bad_key).status_code == 401
        blocked = again.login()  # the right password, but the address is blocked
        assert blocked.status_code == 429
        assert "Too many failed attempts" in blocked.text


def test_the_settings_page_shows_the_accounts_webhook_secret(bridge: Bridge) -> None:
    with WebUser(bridge.base) as user:
        user.signup()
        page = user.keys_page().text
    account = _account(bridge, user.email)
    assert account is not None
    assert f'<code id="webhook-secret">{account.webhook_secret}</code>' in page
    other = bridge.new_key()
    assert other  # another account's secret differs and is not on this page
    with Session(bridge.engine) as s:
        secrets_ = [a.webhook_secret for a in s.exec(select(Account)).all()]
    assert len(set(secrets_)) == len(secrets_)
