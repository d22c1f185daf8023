"""POST /api/v1/images's controls end to end: seed, negative prompt, steps, guidance, size.

Real bridge, real inference server, the small built-in image model (nano-banana:
128x128 native, 4 steps by default, max_steps 50, size factor 8).
"""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import Bridge, InferenceProc


def _make(bridge: Bridge, key: str, **fields: Any) -> dict[str, Any]:
    with bridge.client(key) as c:
        r = c.post("/api/v1/images", json={"prompt": "a red fox in the snow", **fields})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


def _pixels(image: dict[str, Any]) -> bytes:
    f = httpx.get(image["url"])
    assert f.status_code == 200
    with Image.open(io.BytesIO(f.content)) as img:
        return img.convert("RGB").tobytes()


def _balance(bridge: Bridge, key: str) -> int:
    with bridge.client(key) as c:
        r = c.get("/api/v1/account")
    assert r.status_code == 200, r.text
    points: int = r.json()["data"]["points"]
    return points


def test_same_seed_same_pixels_and_the_seed_comes_back(bridge: Bridge) -> None:
    key = bridge.new_key(points=200)
    first = _make(bridge, key, seed=1234, num_images=2)
    again = _make(bridge, key, seed=1234, num_images=2)
    assert first["seed"] == again["seed"] == 1234
    assert [i["seed"] for i in first["images"]] == [1234, 1235]
    assert _pixels(first["images"][0]) == _pixels(again["images"][0])
    assert _pixels(first["images"][1]) == _pixels(again["images"][1])
    assert _pixels(first["images"][0]) != _pixels(first["images"][1])
    # image i is seed + i: the second image alone, from its own seed, is the same picture.
    # Within rounding: a batch of two and a batch of one run matrices of other shapes, whose
    # float sums the CPU's kernels (chosen by shape and thread count) may round apart in the
    # last bit, a unit of a pixel here and there; another seed differs everywhere.
    alone = _make(bridge, key, seed=1235)
    same = _difference(_pixels(alone["images"][0]), _pixels(first["images"][1]))
    other = _difference(_pixels(alone["images"][0]), _pixels(first["images"][0]))
    assert same.max() <= 2 and same.mean() < 0.05
    assert other.mean() > 10 * max(same.mean(), 0.01)


def _difference(a: bytes, b: bytes) -> np.ndarray:
    """Each channel's absolute difference between two pictures of the same size."""
    assert len(a) == len(b)
    return np.abs(np.frombuffer(a, np.uint8).astype(np.int16) - np.frombuffer(b, np.uint8))


def test_an_omitted_seed_is_chosen_returned_and_reproduces(bridge: Bridge) -> None:
    key = bridge.new_key(points=200)
    first = _make(bridge, key)
    seed = first["seed"]
    assert isinstance(seed, int) and 0 <= seed <= 2**32 - 1
    assert first["images"][0]["seed"] == seed
    again = _make(bridge, key, seed=seed)
    assert _pixels(again["images"][0]) == _pixels(first["images"][0])


@pytest.mark.parametrize(
    "change",
    [
        {"negative_prompt": "snow, white"},
        {"steps": 6},
        {"guidance_scale": 9.5},
    ],
)
def test_each_control_changes_the_output(bridge: Bridge, change: dict[str, Any]) -> None:
    key = bridge.new_key(points=200)
    plain = _make(bridge, key, seed=7)
    changed = _make(bridge, key, seed=7, **change)
    assert _pixels(changed["images"][0]) != _pixels(plain["images"][0])


def test_width_and_height_give_that_exact_size(bridge: Bridge) -> None:
    key = bridge.new_key(points=200)
    plain = _make(bridge, key, seed=7)
    sized = _make(bridge, key, seed=7, width=192, height=96)
    image = sized["images"][0]
    assert (image["width"], image["height"]) == (192, 96)
    assert image["aspect_ratio"] == "2:1"
    with Image.open(io.BytesIO(httpx.get(image["url"]).content)) as img:
        assert img.size == (192, 96)
    assert len(_pixels(image)) != len(_pixels(plain["images"][0]))
    agreeing = _make(bridge, key, seed=7, width=128, height=72, aspect_ratio="16:9")
    assert (agreeing["images"][0]["width"], agreeing["images"][0]["height"]) == (128, 72)
    assert agreeing["images"][0]["aspect_ratio"] == "16:9"


def test_price_follows_the_work(bridge: Bridge) -> None:
    key = bridge.new_key(points=200)
    spent = []
    for fields in (
        {},  # the model's defaults: 4 points, as before
        {"steps": 4, "width": 128, "height": 128},  # the defaults spelled out
        {"steps": 2, "width": 64, "height": 64},  # less work costs no less
        {"steps": 8},  # twice the steps
        {"steps": 5},  # 5/4 of the steps: 5 points
        {"width": 256, "height": 128},  # twice the pixels
        {"steps": 6, "width": 192, "height": 192, "num_images": 2},  # 4*2*1.5*2.25 = 27
    ):
        before = _balance(bridge, key)
        data = _make(bridge, key, seed=1, **fields)
        assert data["remaining_points"] == _balance(bridge, key)
        spent.append(before - data["remaining_points"])
    assert spent == [4, 4, 4, 8, 5, 8, 27]


def test_models_list_states_bounds_and_rule(bridge: Bridge) -> None:
    key = bridge.new_key()
    with bridge.client(key) as c:
        r = c.get("/api/v1/models")
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    text = str(data)
    assert "steps / default_steps" in text
    nano = next(m for m in _models(data) if m.get("name") == "nano-banana")
    assert nano["steps"] == {"default": 4, "max": 50}
    assert nano["guidance_scale"]["default"] == 5.0
    assert nano["guidance_scale"]["max"] > nano["guidance_scale"]["min"]
    assert nano["size"]["size_factor"] == 8
    assert nano["size"]["max_pixels"] == 4 * 128 * 128


def _models(data: Any) -> list[dict[str, Any]]:
    """Every model object in the answer, wherever the listing nests them."""
    found: list[dict[str, Any]] = []
    if isinstance(data, dict):
        if "name" in data and "steps" in data:
            found.append(data)
        for v in data.values():
            found.extend(_models(v))
    elif isinstance(data, list):
        for v in data:
            found.extend(_models(v))
    return found


def test_the_project_records_what_it_was_made_with(bridge: Bridge) -> None:
    key = bridge.new_key(points=200)
    made = _make(
        bridge,
        key,
        seed=99,
        negative_prompt="fog",
        steps=5,
        guidance_scale=6.5,
        width=160,
        height=96,
    )
    with bridge.client(key) as c:
        r = c.get("/api/v1/projects", params={"type": "images"})
    assert r.status_code == 200, r.text
    project = next(p for p in r.json()["data"]["projects"] if p["id"] == made["generation_id"])
    meta = project["metadata"]
    assert meta["seed"] == 99
    assert meta["negative_prompt"] == "fog"
    assert meta["steps"] == 5
    assert meta["guidance_scale"] == 6.5
    assert (meta["width"], meta["height"]) == (160, 96)
    assert meta["dimensions"] == "160x96"
    # made again from its metadata: the same pixels
    again = _make(
        bridge,
        key,
        **{k: meta[k] for k in ("seed", "negative_prompt", "steps", "guidance_scale")},
        width=meta["width"],
        height=meta["height"],
    )
    assert _pixels(again["images"][0]) == _pixels(made["images"][0])


BAD_CONTROLS: list[tuple[dict[str, Any], str, str]] = [
    ({"steps": 51}, "steps", "max_steps 50"),
    ({"steps": 0}, "steps", ""),
    ({"guidance_scale": 25}, "guidance_scale", "guidance range"),
    ({"guidance_scale": -1}, "guidance_scale", ""),
    ({"seed": 2**32}, "seed", ""),
    ({"seed": -1}, "seed", ""),
    ({"seed": "1"}, "seed", ""),
    ({"negative_prompt": "   "}, "negative_prompt", ""),
    ({"negative_prompt": "x" * 4001}, "negative_prompt", ""),
    ({"width": 128}, "height", "both or neither"),
    ({"height": 128}, "width", "both or neither"),
    ({"width": 130, "height": 128}, "width", "size_factor 8"),
    ({"width": 512, "height": 512}, "width", "max_pixels"),
    ({"width": 128, "height": 128, "aspect_ratio": "16:9"}, "aspect_ratio", "disagrees"),
]


@pytest.mark.parametrize(("fields", "field", "words"), BAD_CONTROLS)
def test_out_of_bounds_is_422_with_the_balance_unchanged(
    bridge: Bridge, inference: InferenceProc, fields: dict[str, Any], field: str, words: str
) -> None:
    key = bridge.new_key(points=100)
    before = (bridge.row_counts(), inference.rpc_count())
    with bridge.client(key) as c:
        r = c.post("/api/v1/images", json={"prompt": "a fox", **fields})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "validation_error"
    detail = next(d for d in body["details"] if d["field"] == field)
    assert words in str(detail) or words in body["message"], body
    assert _balance(bridge, key) == 100
    assert (bridge.row_counts(), inference.rpc_count()) == before
