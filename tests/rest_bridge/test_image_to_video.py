"""POST /api/v1/videos from a first frame (image to video), with seed and negative_prompt."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from PIL import Image, ImageDraw

from genserve import Client, ValidationError
from tests.clients.test_cli import genserve
from tests.conftest import Bridge, InferenceProc
from tests.rest_bridge.test_videos_api import probe

SQLITE = pytest.mark.parametrize("bridge", ["sqlite"], indirect=True)
SMALL = {"prompt": "a red ball rolls", "duration": 1, "resolution": "360p", "aspect_ratio": "1:1"}


def _frame() -> bytes:
    image = Image.new("RGB", (120, 90), (20, 20, 60))
    ImageDraw.Draw(image).ellipse((30, 15, 90, 75), fill=(230, 40, 40))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _post(bridge: Bridge, key: str, **fields: Any) -> httpx.Response:
    with bridge.client(key) as c:
        return c.post("/api/v1/videos", json={**SMALL, **fields}, timeout=300)


def _mp4(response: httpx.Response) -> bytes:
    assert response.status_code == 200, response.text
    return httpx.get(response.json()["data"]["video"]["url"]).content


@SQLITE
def test_a_video_from_a_first_frame_is_a_valid_mp4(bridge: Bridge) -> None:
    key = bridge.new_key(points=100)
    frame = base64.b64encode(_frame()).decode()
    plain = _post(bridge, key, seed=3)
    animated = _post(bridge, key, seed=3, image_base64=frame)
    again = _post(bridge, key, seed=3, image_base64=frame)
    steered = _post(bridge, key, seed=3, negative_prompt="blur")
    data = [_mp4(r) for r in (plain, animated, again, steered)]
    info = probe(data[1])
    assert info["codec"] == "h264" and info["frames"] >= 1
    assert (info["width"], info["height"]) == (360, 360)
    assert animated.json()["data"]["seed"] == 3
    assert data[1] == data[2]  # the same seed and frame: the same video
    assert data[0] != data[1] and data[0] != data[3]  # the frame and the negative change it
    unseeded = _post(bridge, key)
    assert isinstance(unseeded.json()["data"]["seed"], int)

    with bridge.client(key) as c:
        models = {m["name"]: m for m in c.get("/api/v1/models").json()["data"]["models"]}
        projects = c.get("/api/v1/projects", params={"type": "videos"}).json()["data"]
    assert models["vidu-q2"]["image_to_video"] is True
    assert models["ltx-2"]["image_to_video"] is True  # LTX2ImageToVideoPipeline, from_pipe
    assert not models["vidu-q2"]["first_frame_required"]
    assert not models["ltx-2"]["first_frame_required"]
    meta = {p["id"]: p["metadata"] for p in projects["projects"]}
    kept = meta[animated.json()["data"]["video"]["generation_id"]]
    assert kept["mode"] == "image_to_video" and kept["seed"] == 3
    assert httpx.get(kept["input_image"]).content == _frame()
    assert meta[steered.json()["data"]["video"]["generation_id"]]["negative_prompt"] == "blur"


@SQLITE
def test_ltx2_starts_from_a_frame_too(bridge: Bridge) -> None:
    """The built-in ltx-2 (a tiny LTX2Pipeline) animates a frame through
    LTX2ImageToVideoPipeline made with from_pipe: an MP4 with its sound."""
    key = bridge.new_key(points=100)
    frame = base64.b64encode(_frame()).decode()
    animated = _post(bridge, key, model="ltx-2", seed=4, image_base64=frame)
    plain = _post(bridge, key, model="ltx-2", seed=4)
    info = probe(_mp4(animated))
    assert (info["width"], info["height"]) == (360, 360) and info["frames"] >= 1
    assert info["audio"] == ["aac"]
    assert _frames(_mp4(animated)) != _frames(_mp4(plain))


@SQLITE
def test_a_frame_that_is_not_a_picture_is_422_before_the_debit(
    bridge: Bridge, inference: InferenceProc
) -> None:
    """A model that serves no image to video refusing a frame is tested with the example
    families (tests/rest_bridge/test_example_families.py): every built-in video model
    serves it."""
    key = bridge.new_key(points=100)
    rpcs = inference.rpc_count()
    bad = _post(bridge, key, image_base64="bm90IGFuIGltYWdl")
    assert bad.status_code == 422, bad.text
    with bridge.client(key) as c:
        assert c.get("/api/v1/account").json()["data"]["points"] == 100
    assert inference.rpc_count() == rpcs


@SQLITE
def test_sdk_and_cli_make_a_video_from_a_frame(bridge: Bridge, tmp_path: Path) -> None:
    key = bridge.new_key(points=100)
    frame = tmp_path / "frame.png"
    frame.write_bytes(_frame())
    small = {k: v for k, v in SMALL.items() if k != "prompt"}
    with Client(api_key=key, base_url=bridge.base, timeout=300) as client:
        result = client.videos.generate(
            "a red ball rolls", image=frame, seed=8, negative_prompt="blur", **small
        )
        assert result.seed == 8
        with pytest.raises(ValidationError):
            client.videos.generate("x", image=b"not a picture", **small)
    (saved,) = result.save(tmp_path / "sdk")
    env = {"GENSERVE_BASE_URL": bridge.base, "GENSERVE_API_KEY": key}
    done = genserve(
        tmp_path,
        "video",
        "a red ball rolls",
        "--duration",
        "1",
        "--resolution",
        "360p",
        "--aspect-ratio",
        "1:1",
        "--seed",
        "8",
        "--negative",
        "blur",
        "--image",
        str(frame),
        "-o",
        str(tmp_path / "cli"),
        **env,
    )
    assert done.returncode == 0, done.stderr
    made = Path(done.stdout.strip()).read_bytes()
    assert probe(made)["width"] == probe(saved.read_bytes())["width"] == 360
    # The SDK and the CLI send the same body (the file's bytes as base64, the same seed,
    # negative prompt and defaults): the same pictures, frame for frame.
    assert _frames(made) == _frames(saved.read_bytes())
    with Client(api_key=key, base_url=bridge.base) as client:
        kept = [p.metadata for p in client.projects.list(type="videos")]
    assert all(m["mode"] == "image_to_video" and m["seed"] == 8 for m in kept)


def _frames(mp4: bytes) -> list[bytes]:
    """The decoded pictures (the container's header may carry its own time)."""
    with av.open(io.BytesIO(mp4)) as container:
        return [f.to_ndarray(format="rgb24").tobytes() for f in container.decode(video=0)]
