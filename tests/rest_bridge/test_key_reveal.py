"""Create New Key: post/redirect/get, the key shown once, to the session that made it."""

from __future__ import annotations

from sqlmodel import Session

from storage.accounts import account_by_email, list_api_keys
from tests.conftest import Bridge, BridgePair
from tests.utils.web import NEW_KEY, WebUser


def _live_keys(bridge: Bridge | BridgePair, email: str) -> int:
    with Session(bridge.engine) as s:
        account = account_by_email(s, email)
        assert account is not None and account.id is not None
        return sum(1 for k in list_api_keys(s, account.id) if k.revoked_at is None)


def test_reloading_after_creating_shows_no_key_and_creates_none(bridge: Bridge) -> None:
    with WebUser(bridge.base) as user:
        user.signup()
        created = user.create_key("reload me")
        assert created.status_code == 303
        assert created.headers["location"] == "/settings/api-keys"
        assert "gsk_" not in created.text and "gsk_" not in created.headers["set-cookie"]
        first = user.keys_page()
        found = NEW_KEY.search(first.text)
        assert found is not None
        for _ in range(2):  # a reload is the GET again: no key, no new one
            again = user.keys_page()
            assert again.status_code == 200
            assert NEW_KEY.search(again.text) is None
            assert found.group(1) not in again.text
        assert _live_keys(bridge, user.email) == 1


def test_only_the_session_that_created_the_key_sees_it(bridge: Bridge) -> None:
    with WebUser(bridge.base) as user, WebUser(bridge.base) as other:
        user.signup()
        other.email, other.password = user.email, user.password
        assert other.login().status_code == 303  # the same account, another session
        assert user.create_key("mine").status_code == 303
        reveal = user.http.cookies.get("gs_reveal")
        assert reveal is not None
        other.http.cookies.set("gs_reveal", reveal, domain="127.0.0.1", path="/settings")
        assert NEW_KEY.search(other.keys_page().text) is None  # another session: nothing
        reveal_id, _, pad = reveal.partition(".")
        forged = reveal_id + "." + ("A" * len(pad))
        user.http.cookies.set("gs_reveal", forged, domain="127.0.0.1", path="/settings")
        page = user.keys_page().text
        assert NEW_KEY.search(page) is None  # a wrong pad reveals nothing (and uses it up)
        assert _live_keys(bridge, user.email) == 1


def test_any_bridge_on_the_redis_shows_the_key_once(redis_bridges: BridgePair) -> None:
    first, second = redis_bridges.first, redis_bridges.second
    with WebUser(first.base) as user:
        user.signup()
        assert user.create_key("shared").status_code == 303
        shown = user.http.get(second.base + "/settings/api-keys")
        found = NEW_KEY.search(shown.text)
        assert found is not None
        again = user.http.get(first.base + "/settings/api-keys")
        assert NEW_KEY.search(again.text) is None
        assert _live_keys(redis_bridges, user.email) == 1
