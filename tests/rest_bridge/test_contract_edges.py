"""Contract edges: whole numbers written as floats, Idempotency-Key on the parsed body,
its header errors, and the request id of a replayed answer."""

from __future__ import annotations

import json
import secrets

import httpx
import pytest

from tests.conftest import Bridge


def _post_raw(
    c: httpx.Client, path: str, raw: str, headers: dict[str, str | bytes] | None = None
) -> httpx.Response:
    return c.post(
        path, content=raw.encode(), headers={"Content-Type": "application/json", **(headers or {})}
    )


def test_a_whole_number_of_images_written_as_a_float_is_accepted(bridge: Bridge) -> None:
    key = bridge.new_key(points=100)
    with bridge.client(key) as c:
        r = _post_raw(c, "/api/v1/images", '{"prompt": "two pears", "num_images": 2.0}')
        assert r.status_code == 200, r.text
        assert len(r.json()["data"]["images"]) == 2
        assert r.json()["data"]["remaining_points"] == 92
        half = _post_raw(c, "/api/v1/images", '{"prompt": "a pear", "num_images": 2.5}')
    assert half.status_code == 422, half.text
    assert [d["field"] for d in half.json()["details"]] == ["num_images"]


def test_a_whole_duration_written_as_a_float_is_accepted(bridge: Bridge) -> None:
    key = bridge.new_key(points=100)
    body = '{"prompt": "a red kite", "duration": 1.0, "resolution": "360p", "aspect_ratio": "1:1"}'
    with bridge.client(key) as c:
        r = _post_raw(c, "/api/v1/videos", body)
        assert r.status_code == 200, r.text
        assert r.json()["data"]["video"]["duration"] == 1
        half = _post_raw(c, "/api/v1/videos", body.replace("1.0", "1.5"))
    assert half.status_code == 422, half.text
    assert [d["field"] for d in half.json()["details"]] == ["duration"]


def test_a_retry_with_the_same_body_written_differently_replays(bridge: Bridge) -> None:
    key = bridge.new_key(points=100)
    headers = {"Idempotency-Key": "edge-" + secrets.token_hex(4)}
    first_raw = '{"prompt": "a blue door", "num_images": 2, "output_format": "webp"}'
    retries = [
        '{\n  "output_format" : "webp",\n  "num_images" : 2,\n  "prompt" : "a blue door"\n}',
        '{"num_images":2.0,"prompt":"a blue door","output_format":"webp"}',
        json.dumps({"prompt": "a blue door", "num_images": 2, "output_format": "webp"}, indent=4),
    ]
    with bridge.client(key) as c:
        first = _post_raw(c, "/api/v1/images", first_raw, headers)
        assert first.status_code == 200, first.text
        first_id = first.json()["data"]["request_id"]
        assert first.headers["x-request-id"] == first_id
        for raw in retries:
            again = _post_raw(c, "/api/v1/images", raw, headers)
            assert again.status_code == 200, again.text
            assert again.headers["idempotent-replayed"] == "true"
            assert again.json() == first.json()
            # The replay is the first answer: body and header carry the first request's id.
            assert again.headers["x-request-id"] == first_id
        other = _post_raw(c, "/api/v1/images", first_raw.replace("blue", "green"), headers)
        assert other.status_code == 422, other.text
        assert other.json()["code"] == "validation_error"
        assert other.json()["request_id"] == other.headers["x-request-id"] != first_id
        assert c.get("/api/v1/account").json()["data"]["points"] == 92  # one debit


@pytest.mark.parametrize(
    "value",
    [b"k" * 256, b"", b"abc\x85def", b"tab\there"],
    ids=["too-long", "empty", "c1-control", "tab"],
)
def test_a_bad_idempotency_key_is_an_invalid_request(bridge: Bridge, value: bytes) -> None:
    key = bridge.new_key(points=100)
    with bridge.client(key) as c:
        r = _post_raw(c, "/api/v1/images", '{"prompt": "a"}', {"Idempotency-Key": value})
        points = c.get("/api/v1/account").json()["data"]["points"]
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "invalid_request"
    assert body["request_id"] == r.headers["x-request-id"]
    assert body["details"][0]["field"] == "Idempotency-Key"
    assert points == 100
