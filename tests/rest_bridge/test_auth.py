"""Bearer keys: every malformed, unknown or misplaced key gets 401 in the envelope."""

from __future__ import annotations

import httpx
import pytest
from sqlmodel import Session, select

from storage.keys import is_well_formed
from storage.models import ApiKey
from tests.conftest import Bridge


def _post(bridge: Bridge, headers: dict[str, str], url: str = "/api/v1/images") -> httpx.Response:
    return httpx.post(bridge.base + url, json={"prompt": "a"}, headers=headers, timeout=30)


def test_valid_key_is_accepted_and_use_recorded(bridge: Bridge) -> None:
    key = bridge.new_key()
    assert is_well_formed(key)
    r = _post(bridge, {"Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    with Session(bridge.engine) as s:
        rows = s.exec(select(ApiKey).where(ApiKey.last_four == key[-4:])).all()
        assert any(row.last_used_at is not None for row in rows)
        # only a keyed hash is stored, never the key
        assert all(key not in (row.key_hash, row.prefix) for row in rows)


def _flip_last(key: str) -> str:
    return key[:-1] + ("A" if key[-1] != "A" else "B")


@pytest.mark.parametrize(
    "make_headers",
    [
        lambda k: {},
        lambda k: {"Authorization": k},
        lambda k: {"Authorization": f"Baerer {k}"},
        lambda k: {"Authorization": f"bearer{k}"},
        lambda k: {"Authorization": "Bearer"},
        lambda k: {"Authorization": "Bearer gsk_short"},
        lambda k: {"Authorization": f"Bearer {_flip_last(k)}"},
        lambda k: {"Authorization": "Bearer gsk_" + "a" * 38},
    ],
    ids=[
        "missing",
        "no-scheme",
        "misspelt",
        "no-space",
        "empty",
        "short",
        "bad-checksum",
        "garbage",
    ],
)
def test_bad_keys_are_401(bridge: Bridge, make_headers) -> None:  # type: ignore[no-untyped-def]
    key = bridge.new_key()
    r = _post(bridge, make_headers(key))
    assert r.status_code == 401, r.text
    body = r.json()
    assert body == {
        "success": False,
        "error": body["error"],
        "code": "invalid_api_key",
        "request_id": r.headers["x-request-id"],
    }


def test_unknown_but_well_formed_key_is_401(bridge: Bridge) -> None:
    from storage.keys import generate_key

    r = _post(bridge, {"Authorization": f"Bearer {generate_key()}"})
    assert r.status_code == 401


def test_key_in_query_string_is_refused(bridge: Bridge) -> None:
    key = bridge.new_key()
    r = httpx.get(f"{bridge.base}/api/v1/projects", params={"api_key": key})
    assert r.status_code == 401
    r = httpx.get(
        f"{bridge.base}/api/v1/projects",
        params={"api_key": key},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 401
    assert "query string" in r.json()["error"]


def test_auth_comes_before_body_validation(bridge: Bridge) -> None:
    r = httpx.post(f"{bridge.base}/api/v1/images", content=b"{broken")
    assert r.status_code == 401


def test_unknown_route_is_enveloped(bridge: Bridge) -> None:
    r = httpx.get(f"{bridge.base}/api/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_files_cannot_be_guessed(bridge: Bridge) -> None:
    for path in (
        "/files/" + "0" * 32 + "/x.png",
        "/files/..%2f..%2fetc/passwd",
        "/files/abc/x.png",
    ):
        r = httpx.get(bridge.base + path)
        assert r.status_code == 404
        assert r.json()["success"] is False
