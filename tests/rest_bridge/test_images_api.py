"""POST /api/v1/images end to end: real bridge, real inference server, real databases."""

from __future__ import annotations

import io
import re

import httpx
import pytest
from PIL import Image
from sqlmodel import Session, func, select

from storage.models import Account, PointsLedger
from tests.conftest import Bridge, InferenceProc

PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


@pytest.mark.parametrize(
    ("fmt", "ratio", "n"), [("png", "1:1", 1), ("jpeg", "16:9", 2), ("webp", "9:21", 4)]
)
def test_generates_decodable_images(bridge: Bridge, fmt: str, ratio: str, n: int) -> None:
    key = bridge.new_key(points=100)
    with bridge.client(key) as c:
        r = c.post(
            "/api/v1/images",
            json={
                "prompt": "A lighthouse at dawn",
                "aspect_ratio": ratio,
                "output_format": fmt,
                "num_images": n,
            },
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["success"] is True
        data = body["data"]
        assert re.fullmatch(r"[0-9a-f]{24}", data["generation_id"])
        assert data["request_id"] == r.headers["x-request-id"]
        assert data["request_id"].startswith("req_")
        assert data["remaining_points"] == 100 - 4 * n
        assert isinstance(data["generation_time"], int)
        assert len(data["images"]) == n
        w_ratio, h_ratio = (int(x) for x in ratio.split(":"))
        for img in data["images"]:
            assert img["content_type"] == f"image/{fmt}"
            assert img["aspect_ratio"] == ratio
            assert img["file_name"].endswith(f".{fmt}")
            assert img["url"].startswith(bridge.base + "/files/")
            f = httpx.get(img["url"])  # capability URL: no key needed
            assert f.status_code == 200
            assert f.headers["content-type"] == img["content_type"]
            assert len(f.content) == img["file_size"]
            decoded = Image.open(io.BytesIO(f.content))
            decoded.load()
            assert decoded.format == PIL_FORMATS[fmt]
            assert decoded.size == (img["width"], img["height"])
            assert img["width"] % 8 == 0 and img["height"] % 8 == 0
            assert abs(img["width"] / img["height"] - w_ratio / h_ratio) < 0.08


def test_defaults_of_the_document(bridge: Bridge) -> None:
    key = bridge.new_key()
    with bridge.client(key) as c:
        r = c.post("/api/v1/images", json={"prompt": "A majestic eagle"})
    assert r.status_code == 200, r.text
    images = r.json()["data"]["images"]
    assert len(images) == 1
    assert images[0]["content_type"] == "image/png"
    assert images[0]["aspect_ratio"] == "1:1"
    assert images[0]["width"] == images[0]["height"]


def test_curl_without_content_type_is_read_as_json(bridge: Bridge) -> None:
    key = bridge.new_key()
    r = httpx.post(
        f"{bridge.base}/api/v1/images",
        content=b'{"prompt": "x", "output_format": "webp"}',
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        timeout=60,
    )
    assert r.status_code == 200, r.text


BAD_BODIES = [
    ({"prompt": ""}, 422, "prompt"),
    ({"prompt": "   "}, 422, "prompt"),
    ({"prompt": "x" * 4001}, 422, "prompt"),
    ({}, 422, "prompt"),
    ({"prompt": "a", "num_images": 0}, 422, "num_images"),
    ({"prompt": "a", "num_images": 5}, 422, "num_images"),
    ({"prompt": "a", "num_images": "2"}, 422, "num_images"),
    ({"prompt": "a", "num_images": 1.5}, 422, "num_images"),
    ({"prompt": 42}, 422, "prompt"),
    ({"prompt": "a", "aspect_ratio": "7:3"}, 422, "aspect_ratio"),
    ({"prompt": "a", "output_format": "gif"}, 422, "output_format"),
    ({"prompt": "a", "model": "dall-e-9"}, 422, "model"),
    ({"prompt": "a", "points": 1000}, 422, "points"),
    ({"prompt": "a", "owner": 1}, 422, "owner"),
    (["prompt"], 422, "body"),
]


@pytest.mark.parametrize(("payload", "status", "field"), BAD_BODIES)
def test_bad_input_is_refused_before_any_work(
    bridge: Bridge, inference: InferenceProc, payload: object, status: int, field: str
) -> None:
    key = bridge.new_key(points=100)
    before_rows, before_files, before_rpcs = (
        bridge.row_counts(),
        bridge.blob_files(),
        inference.rpc_count(),
    )
    with bridge.client(key) as c:
        r = c.post("/api/v1/images", json=payload)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False
    assert body["code"] == "validation_error"
    assert body["request_id"] == r.headers["x-request-id"]
    assert any(d["field"] == field for d in body["details"]), body
    assert bridge.row_counts() == before_rows
    assert bridge.blob_files() == before_files
    assert inference.rpc_count() == before_rpcs


@pytest.mark.parametrize("raw", [b"{not json", b'{"prompt": "a",}', b"", b"  \n"])
def test_malformed_json_is_400(bridge: Bridge, raw: bytes) -> None:
    """Bytes that are not JSON at all (an empty body included) are a 400, never a 422."""
    key = bridge.new_key()
    r = httpx.post(
        f"{bridge.base}/api/v1/images",
        content=raw,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "invalid_request"
    assert body["success"] is False
    assert body["request_id"] == r.headers["x-request-id"]
    assert "JSON" in body["error"]


@pytest.mark.parametrize("raw", [b"[]", b'"prompt"', b"null", b"4"])
def test_json_that_is_not_an_object_is_422(bridge: Bridge, raw: bytes) -> None:
    """Valid JSON of the wrong shape is a validation error on the body."""
    key = bridge.new_key()
    r = httpx.post(
        f"{bridge.base}/api/v1/images",
        content=raw,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "validation_error"
    assert body["details"] == [{"field": "body", "message": "the body must be a JSON object"}]


def test_points_ledger_matches_balance(bridge: Bridge) -> None:
    key = bridge.new_key(points=10)
    with bridge.client(key) as c:
        ok = c.post("/api/v1/images", json={"prompt": "a", "num_images": 2})
        assert ok.status_code == 200
        short = c.post("/api/v1/images", json={"prompt": "a", "num_images": 1})
    assert short.status_code == 402
    assert short.json()["code"] == "insufficient_points"
    with Session(bridge.engine) as s:
        for account in s.exec(select(Account)).all():
            total = s.exec(
                select(func.coalesce(func.sum(PointsLedger.delta), 0)).where(
                    PointsLedger.account_id == account.id
                )
            ).one()
            assert account.points == total
            assert account.points >= 0
