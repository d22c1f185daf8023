"""POST /api/v1/images with an input image: image to image and inpainting (nano-banana)."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw

from rest_bridge.edge.errors import ApiError
from rest_bridge.generation.image import IMAGE, ImageRequest
from rest_bridge.link.catalogue import ModelEntry
from tests.conftest import Bridge, InferenceProc


def _b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _picture() -> Image.Image:
    image = Image.new("RGB", (200, 150), (30, 80, 200))
    ImageDraw.Draw(image).ellipse((50, 30, 150, 120), fill=(240, 200, 40))
    return image


def _mask() -> Image.Image:
    mask = Image.new("L", (200, 150), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 100, 150), fill=255)
    return mask


def _post(bridge: Bridge, key: str, **fields: Any) -> httpx.Response:
    with bridge.client(key) as c:
        return c.post("/api/v1/images", json={"prompt": "a sunflower", "seed": 5, **fields})


def _pixels(data: dict[str, Any]) -> Image.Image:
    with Image.open(io.BytesIO(httpx.get(data["images"][0]["url"]).content)) as img:
        return img.convert("RGB")


@pytest.mark.parametrize("bridge", ["sqlite", "postgresql"], indirect=True)
def test_image_to_image_and_inpainting(bridge: Bridge) -> None:
    key = bridge.new_key(points=200)
    plain = _post(bridge, key, width=160, height=120)
    assert plain.status_code == 200, plain.text
    from_image = _post(bridge, key, width=160, height=120, image_base64=_b64(_picture()))
    assert from_image.status_code == 200, from_image.text
    weaker = _post(bridge, key, width=160, height=120, image_base64=_b64(_picture()), strength=0.3)
    assert weaker.status_code == 200, weaker.text
    inpainted = _post(
        bridge,
        key,
        width=160,
        height=120,
        image_base64=_b64(_picture()),
        mask_base64=_b64(_mask()),
    )
    assert inpainted.status_code == 200, inpainted.text
    images = [_pixels(r.json()["data"]) for r in (plain, from_image, weaker, inpainted)]
    assert all(i.size == (160, 120) for i in images)
    blobs = [i.tobytes() for i in images]
    assert len(set(blobs)) == 4  # the input, the strength and the mask each change it
    # inpainting keeps the unmasked (black) half closer to the input than the masked half
    source = _picture().resize((160, 120))
    painted = images[3]

    def distance(box: tuple[int, int, int, int]) -> float:
        a, b = source.crop(box).tobytes(), painted.crop(box).tobytes()
        return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)

    assert distance((100, 0, 160, 120)) < distance((0, 0, 60, 120))

    with bridge.client(key) as c:
        projects = c.get("/api/v1/projects", params={"type": "images"}).json()["data"]
    meta = {p["id"]: p["metadata"] for p in projects["projects"]}
    assert meta[inpainted.json()["data"]["generation_id"]]["mode"] == "inpaint"
    assert meta[weaker.json()["data"]["generation_id"]]["strength"] == 0.3
    # the input image and mask are kept as assets of the project, byte for byte
    kept = meta[inpainted.json()["data"]["generation_id"]]
    assert httpx.get(kept["input_image"]).content == base64.b64decode(_b64(_picture()))
    assert httpx.get(kept["mask_image"]).content == base64.b64decode(_b64(_mask()))
    assert "mask_image" not in meta[weaker.json()["data"]["generation_id"]]
    assert "input_image" not in meta[plain.json()["data"]["generation_id"]]

    with bridge.client(key) as c:
        models = c.get("/api/v1/models").json()["data"]["models"]
    banana = next(m for m in models if m["name"] == "nano-banana")
    assert banana["image_modes"] == ["text_to_image", "image_to_image", "inpaint"]


@pytest.mark.parametrize("bridge", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"mask_base64": "AAAA"}, "mask_base64"),
        ({"strength": 0.5}, "strength"),
        ({"image_base64": "bm90IGFuIGltYWdl"}, "image_base64"),
        ({"image_base64": "", "strength": 0.5}, "image_base64"),
        ({"image_base64": _b64(_picture()), "strength": 0}, "strength"),
        ({"image_base64": _b64(_picture()), "mask_base64": "bm90"}, "mask_base64"),
    ],
)
def test_bad_inputs_are_422_before_the_debit(
    bridge: Bridge, inference: InferenceProc, fields: dict[str, Any], field: str
) -> None:
    key = bridge.new_key(points=100)
    rpcs = inference.rpc_count()
    r = _post(bridge, key, **fields)
    assert r.status_code == 422, r.text
    assert any(d["field"] == field for d in r.json()["details"]), r.json()
    with bridge.client(key) as c:
        assert c.get("/api/v1/account").json()["data"]["points"] == 100
    assert inference.rpc_count() == rpcs


def test_a_mode_the_model_does_not_serve_is_refused_when_settled() -> None:
    text_only = ModelEntry(name="sdxl-turbo", kind="image", is_default=True)
    body = ImageRequest.model_validate({"prompt": "x", "image_url": "https://example.com/a.png"})
    with pytest.raises(ApiError) as refused:
        IMAGE.settle(body, text_only)
    assert refused.value.status == 422
    assert "does not serve image_to_image" in refused.value.message


def test_an_input_image_is_an_edit_on_an_edit_model() -> None:
    kontext = ModelEntry(
        name="flux-kontext-dev",
        kind="image",
        is_default=False,
        image_modes=("text_to_image", "edit"),
    )
    body = ImageRequest.model_validate({"prompt": "make it night", "image_url": "https://e.x/a"})
    assert IMAGE.settle(body, kontext).mode == "edit"
    assert IMAGE.params(IMAGE.settle(body, kontext))["mode"] == "edit"
    with pytest.raises(ApiError) as strength:
        IMAGE.settle(body.model_copy(update={"strength": 0.5}), kontext)
    assert strength.value.status == 422 and "no strength" in strength.value.message
    both = ModelEntry(
        name="both", kind="image", is_default=False, image_modes=("image_to_image", "edit")
    )
    assert IMAGE.settle(body, both).mode == "edit"
    strong = body.model_copy(update={"strength": 0.5})
    assert IMAGE.settle(strong, both).mode == "image_to_image"
