"""The web pages over HTTP: sign-up, sessions, CSRF, Settings → API Keys, log-in brake."""

from __future__ import annotations

import re
import secrets

import httpx
import pytest
from sqlmodel import Session, select

from storage import points
from storage.accounts import account_by_email, list_api_keys
from storage.models import Account, ApiKey, Generation, WebSession
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


def test_wrong_csrf_tokens_count_on_the_brake_and_a_live_session_passes_it(
    redis_bridges: BridgePair,
) -> None:
    """The session is checked like a key: failures brake the address, a live one still works."""
    address = "10.201." + ".".join(str(secrets.randbelow(250) + 1) for _ in range(2))
    base = redis_bridges.first.base
    with WebUser(base, address) as user:
        assert user.signup().status_code == 303
        csrf = user.csrf("/settings/api-keys")
        for _ in range(5):
            r = user.http.get("/api/v1/account", headers={"X-CSRF-Token": "0" * 64})
            assert r.status_code == 401
        braked = user.http.get("/api/v1/account", headers={"X-CSRF-Token": "0" * 64})
        assert braked.status_code == 429 and "failed authentication" in braked.json()["error"]
        live = user.http.get("/api/v1/account", headers={"X-CSRF-Token": csrf})
        assert live.status_code == 200, live.text


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


# The pages are clients of /api/v1: a session (cookie + the session's CSRF token in
# X-CSRF-Token) is one more credential of the one authentication dependency.


def _signed_in_with_key(user: WebUser) -> tuple[str, int, str]:
    """Signs up and makes a key; returns the session's CSRF token, the key's id and the key."""
    assert user.signup().status_code == 303
    key_id, key = user.new_key("pages")
    return user.csrf("/settings/api-keys"), key_id, key


def _generation_key(bridge: Bridge, generation_id: str) -> int | None:
    with Session(bridge.engine) as s:
        gen = s.get(Generation, generation_id)
        assert gen is not None
        return gen.api_key_id


def test_a_session_generates_through_the_public_api_like_a_key(bridge: Bridge) -> None:
    with WebUser(bridge.base) as user:
        csrf, key_id, key = _signed_in_with_key(user)
        r = user.http.post(
            "/api/v1/images", json={"prompt": "a red cube"}, headers={"X-CSRF-Token": csrf}
        )
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert data["remaining_points"] == 96  # 100, less an image's 4, as with a key
        assert r.headers["x-ratelimit-limit"] == "100"
        assert r.headers["x-ratelimit-remaining"] == "99"
        assert _generation_key(bridge, data["generation_id"]) == key_id  # counted on the key
        with bridge.client(key) as api:
            by_key = api.post("/api/v1/images", json={"prompt": "a blue cube"})
            assert by_key.status_code == 200
            assert by_key.json()["data"]["remaining_points"] == 92
            assert by_key.headers["x-ratelimit-remaining"] == "98"  # one hourly budget
        listed = user.http.get("/api/v1/projects", headers={"X-CSRF-Token": csrf})
        assert listed.status_code == 200
        assert [p["prompt"] for p in listed.json()["data"]["projects"]] == [
            "a blue cube",
            "a red cube",
        ]
        row = user.keys_page().text
        row = row[row.index(f'data-key-id="{key_id}"') :]
        assert '<td class="key-usage">3 / 100</td>' in row
    account = _account(bridge, user.email)
    assert account is not None and account.id is not None
    with Session(bridge.engine) as s:
        assert points.balance(s, account.id) == points.ledger_sum(s, account.id) == 92


def test_the_cookie_alone_or_a_wrong_token_is_no_credential(bridge: Bridge) -> None:
    with WebUser(bridge.base) as user:
        csrf, _key_id, _key = _signed_in_with_key(user)
        before = bridge.row_counts()
        cookie_only = user.http.post("/api/v1/images", json={"prompt": "x"})
        assert cookie_only.status_code == 401
        assert cookie_only.json()["code"] == "invalid_api_key"
        assert "Missing API key" in cookie_only.json()["error"]
        assert cookie_only.headers["www-authenticate"] == "Bearer"
        wrong = user.http.post(
            "/api/v1/images", json={"prompt": "x"}, headers={"X-CSRF-Token": csrf[::-1]}
        )
        assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_api_key"
        foreign = user.http.post(
            "/api/v1/images",
            json={"prompt": "x"},
            headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"},
        )
        assert foreign.status_code == 403 and foreign.json()["code"] == "forbidden"
        # a cross-site form: the cookie rides along, the token cannot
        form = user.http.post(
            "/api/v1/images",
            data={"prompt": "x"},
            headers={"Origin": "https://evil.example"},
        )
        assert form.status_code == 401
        assert bridge.row_counts() == before
        assert user.http.get("/api/v1/account").status_code == 401
    # a token without a session
    r = httpx.post(
        bridge.base + "/api/v1/images", json={"prompt": "x"}, headers={"X-CSRF-Token": csrf}
    )
    assert r.status_code == 401 and r.json()["code"] == "invalid_api_key"


def test_a_bearer_key_wins_over_the_session(bridge: Bridge) -> None:
    other = bridge.new_key(points=50)
    with WebUser(bridge.base) as user:
        csrf, _key_id, _key = _signed_in_with_key(user)
        r = user.http.get(
            "/api/v1/account",
            headers={"X-CSRF-Token": csrf, "Authorization": f"Bearer {other}"},
        )
        assert r.status_code == 200 and r.json()["data"]["points"] == 50
        bad = user.http.get(
            "/api/v1/account", headers={"X-CSRF-Token": csrf, "Authorization": "Bearer nope"}
        )
        assert bad.status_code == 401  # a wrong key is not rescued by the session
        mine = user.http.get("/api/v1/account", headers={"X-CSRF-Token": csrf})
        assert mine.status_code == 200 and mine.json()["data"]["points"] == 100


def test_malformed_json_with_a_session_is_the_same_400_as_with_a_key(bridge: Bridge) -> None:
    with WebUser(bridge.base) as user:
        csrf, _key_id, key = _signed_in_with_key(user)
        answers = []
        for headers in ({"X-CSRF-Token": csrf}, {"Authorization": f"Bearer {key}"}):
            r = user.http.post(
                "/api/v1/images",
                content=b'{"prompt": "x",',
                headers={**headers, "Content-Type": "application/json"},
            )
            assert r.status_code == 400, r.text
            body = r.json()
            assert body["success"] is False and body["code"] == "invalid_request"
            assert "request_id" in body and r.headers["x-ratelimit-limit"] == "100"
            answers.append((body["code"], body["error"]))
        assert answers[0] == answers[1]
        # without a credential the body is never judged: 401, as for a key-less request
        r = user.http.post(
            "/api/v1/images",
            content=b'{"prompt": "x",',
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 401 and "Missing API key" in r.json()["error"]


def test_a_session_without_a_key_counts_against_its_account(bridge: Bridge) -> None:
    with WebUser(bridge.base) as user:
        assert user.signup().status_code == 303
        csrf = user.csrf("/settings/api-keys")
        r = user.http.post(
            "/api/v1/images", json={"prompt": "no key"}, headers={"X-CSRF-Token": csrf}
        )
        assert r.status_code == 200, r.text
        assert r.json()["data"]["remaining_points"] == 96
        assert r.headers["x-ratelimit-remaining"] == "99"
        assert _generation_key(bridge, r.json()["data"]["generation_id"]) is None
        for _ in range(99):
            assert user.http.get("/api/v1/account", headers={"X-CSRF-Token": csrf}).is_success
        refused = user.http.get("/api/v1/account", headers={"X-CSRF-Token": csrf})
        assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) > 0
        assert "This account has used its 100 requests" in refused.json()["error"]


def test_no_web_api_routes_remain() -> None:
    from rest_bridge.app import create_app
    from rest_bridge.edge.openapi import api_routes

    paths = [route.path for route in api_routes(create_app())]
    assert "/api/v1/images" in paths and "/playground" in paths
    assert not [p for p in paths if p.startswith("/web/api")]


@pytest.mark.parametrize("path", ["/api/v1/images", "/api/v1/videos", "/api/v1/3d"])
def test_malformed_json_from_a_session_is_a_400_not_a_401(bridge: Bridge, path: str) -> None:
    with WebUser(bridge.base) as user:
        assert user.signup().status_code == 303
        csrf = user.csrf("/settings/api-keys")
        r = user.http.post(
            path,
            content=b'{"prompt": "a red cube",',
            headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"},
        )
        assert r.status_code == 400, (path, r.status_code, r.text[:300])
        assert r.json()["code"] == "invalid_request"


@pytest.mark.parametrize("path", ["/login", "/signup", "/settings/api-keys"])
def test_json_to_a_form_is_refused_by_its_csrf_check_not_as_a_missing_key(
    bridge: Bridge, path: str
) -> None:
    """The pages' forms take form fields; a JSON body carries no form CSRF token: 403."""
    with WebUser(bridge.base) as user:
        assert user.signup().status_code == 303
        r = user.http.post(
            path, content=b'{"email": ', headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 403, (path, r.status_code, r.text[:300])
