"""The edit and image-to-video families of ``examples/models/`` through a real bridge.

FLUX.1 Kontext edits an input image by the prompt over ``POST /api/v1/images`` and
OpenAI's ``POST /v1/images/edits``; Wan 2.1 I2V animates a first frame over
``POST /api/v1/videos`` and refuses a request without one before the debit; Wan 2.1
T2V refuses a first frame. Each entry is its example file scaled down as the family
test does it (``tests/inference_server/test_families.py``: the source a small
random-weight build of the same pipeline class, the CPU, 64x64 pictures, 4 fps),
served by a real inference server behind a real bridge.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw

from inference_server.tiny import flux, wan
from storage.db import make_engine
from tests.conftest import Bridge, InferenceProc, bridge_env
from tests.inference_server.test_families import FILES, IMAGE_SIDE, local_copy
from tests.utils.mp4 import decoded_rgb
from tests.utils.procs import start_bridge, start_inference

EDIT = "flux-kontext-dev"
I2V = "wan2.1-i2v-14b-480p"
T2V = "wan2.1-t2v-1.3b"
BUILDS: dict[str, Callable[[Path], None]] = {
    EDIT: flux.build_kontext,
    I2V: wan.build_i2v,
    T2V: wan.build,
}
CLIP = {"prompt": "the ball rolls", "duration": 1, "resolution": "360p", "aspect_ratio": "1:1"}


@pytest.fixture(scope="module")
def served(
    model_cache: Path, logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Bridge, InferenceProc]]:
    """One inference server for the three families' scaled-down files, one bridge before it."""
    folder = tmp_path_factory.mktemp("example-families")
    copies = []
    for stem, build in BUILDS.items():
        build(folder / "builds" / stem)
        text = FILES[stem].read_text()
        kind = "image" if stem == EDIT else "video"
        copies.append(local_copy(text, str(folder / "builds" / stem), kind, folder))
    models = folder / "models.toml"
    models.write_text("\n".join(copies))
    proc, port, metrics_port = start_inference(model_cache, logs, models_file=models)
    db_url = f"sqlite:///{folder / 'genserve.db'}"
    try:
        bridge_proc, base = start_bridge(bridge_env(folder, db_url, f"127.0.0.1:{port}"), logs)
    except BaseException:
        proc.stop()
        raise
    engine = make_engine(db_url)
    try:
        yield (
            Bridge(base=base, engine=engine, data_dir=folder, proc=bridge_proc),
            InferenceProc(proc, port, metrics_port),
        )
    finally:
        bridge_proc.stop()
        proc.stop()
        engine.dispose()


def _picture() -> bytes:
    image = Image.new("RGB", (120, 90), (30, 80, 200))
    ImageDraw.Draw(image).ellipse((40, 15, 100, 75), fill=(240, 200, 40))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _mask() -> bytes:
    mask = Image.new("L", (120, 90), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 60, 90), fill=255)
    buf = io.BytesIO()
    mask.save(buf, "PNG")
    return buf.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _points(http: httpx.Client) -> int:
    points: int = http.get("/api/v1/account").json()["data"]["points"]
    return points


def _models(http: httpx.Client) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in http.get("/api/v1/models").json()["data"]["models"]}


def _refused(response: httpx.Response, field: str) -> str:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["success"] is False and body["code"] == "validation_error"
    assert body["details"][0]["field"] == field
    message: str = body["details"][0]["message"]
    return message


@pytest.mark.server
def test_the_edit_family_edits_an_image_through_rest(
    served: tuple[Bridge, InferenceProc],
) -> None:
    bridge, inference = served
    key = bridge.new_key(points=100)
    asked = {"prompt": "make it night", "model": EDIT, "steps": 2, "seed": 5}
    with bridge.client(key) as http:
        assert _models(http)[EDIT]["image_modes"] == ["text_to_image", "edit"]
        edited = http.post(
            "/api/v1/images",
            json={**asked, "image_base64": _b64(_picture()), "width": 96, "height": 64},
        )
        assert edited.status_code == 200, edited.text
        (image,) = edited.json()["data"]["images"]
        with Image.open(io.BytesIO(httpx.get(image["url"]).content)) as out:
            assert out.size == (96, 64)
        made = edited.json()["data"]["generation_id"]
        projects = http.get("/api/v1/projects", params={"type": "images"}).json()["data"]
        meta = {p["id"]: p["metadata"] for p in projects["projects"]}[made]
        assert meta["mode"] == "edit" and meta["seed"] == 5
        assert httpx.get(meta["input_image"]).content == _picture()

        points, rpcs = _points(http), inference.rpc_count()
        with_strength = http.post(
            "/api/v1/images", json={**asked, "image_base64": _b64(_picture()), "strength": 0.5}
        )
        with_mask = http.post(
            "/api/v1/images",
            json={**asked, "image_base64": _b64(_picture()), "mask_base64": _b64(_mask())},
        )
        assert "no strength" in _refused(with_strength, "strength")
        assert "inpaint" in _refused(with_mask, "mask_base64")
        assert _points(http) == points
    assert inference.rpc_count() == rpcs


@pytest.mark.server
def test_openai_edits_go_to_the_edit_family(served: tuple[Bridge, InferenceProc]) -> None:
    from openai import OpenAI

    bridge, _ = served
    client = OpenAI(base_url=bridge.base + "/v1", api_key=bridge.new_key(points=100))
    edited = client.images.edit(
        image=("still.png", _picture(), "image/png"),
        prompt="make it night",
        model=EDIT,
        size=f"{IMAGE_SIDE}x{IMAGE_SIDE}",  # type: ignore[arg-type]
        response_format="b64_json",
    )
    assert edited.data is not None and edited.data[0].b64_json is not None
    with Image.open(io.BytesIO(base64.b64decode(edited.data[0].b64_json))) as out:
        assert out.size == (IMAGE_SIDE, IMAGE_SIDE)


@pytest.mark.server
def test_the_image_to_video_family_needs_a_first_frame_through_rest(
    served: tuple[Bridge, InferenceProc],
) -> None:
    bridge, inference = served
    key = bridge.new_key(points=100)
    with bridge.client(key) as http:
        models = _models(http)
        assert models[I2V]["image_to_video"] is True
        assert models[I2V]["first_frame_required"] is True
        assert models[T2V]["image_to_video"] is False
        assert models[T2V]["first_frame_required"] is False

        points, rpcs = _points(http), inference.rpc_count()
        without = http.post("/api/v1/videos", json={**CLIP, "model": I2V, "seed": 1})
        assert "first frame" in _refused(without, "image_url")
        assert "first frame" in without.json()["error"]
        framed_t2v = http.post(
            "/api/v1/videos", json={**CLIP, "model": T2V, "image_base64": _b64(_picture())}
        )
        assert "image_to_video" in _refused(framed_t2v, "image_base64")
        assert _points(http) == points
        assert inference.rpc_count() == rpcs

        animated = http.post(
            "/api/v1/videos",
            json={**CLIP, "model": I2V, "seed": 1, "image_base64": _b64(_picture())},
        )
        assert animated.status_code == 200, animated.text
        video = animated.json()["data"]["video"]
        assert (video["width"], video["height"], video["frame_count"]) == (360, 360, 4)
    frames = decoded_rgb(httpx.get(video["url"]).content)
    assert [f.shape for f in frames] == [(360, 360, 3)] * 4
