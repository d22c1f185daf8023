"""POST /api/v1/videos end to end: real bridge, real inference server, real databases.

Clips are mostly 360p and 1 to 2 s so the file stays quick on a small CPU; one
test keeps the document's defaults (vidu-q2, 4 s, 720p, 16:9).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from PIL import Image
from sqlmodel import Session, select

from inference_server.model_config import load_model_table
from inference_server.video_geometry import output_size
from rest_bridge.generation.video import RESOLUTION_SCALE
from storage.db import make_engine, migrate
from storage.models import Account, Generation
from tests.conftest import Bridge, InferenceProc, bridge_env
from tests.utils.mp4 import mp4_box_order
from tests.utils.procs import start_bridge

VIDEO_MODELS = {spec.name: spec for spec in load_model_table(None).models if spec.kind == "video"}
PRICE_4S_720P = 10  # CONTRACT.md's default
DOCUMENT_PROMPT = "A spaceship flying through a colorful nebula with stars in background"


def price(duration: int, resolution: str) -> int:
    return max(1, round(PRICE_4S_720P * duration / 4 * RESOLUTION_SCALE[resolution]))


def probe(data: bytes) -> dict[str, Any]:
    """The file as a player sees it: codec, pixel format, size, decoded frames, duration."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        info: dict[str, Any] = {
            "codec": stream.codec_context.name,
            "pix_fmt": stream.codec_context.pix_fmt,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "rate": float(stream.average_rate or 0),
            "audio": [s.codec_context.name for s in container.streams.audio],
        }
        info["frames"] = sum(1 for _ in container.decode(video=0))
    info["duration"] = info["frames"] / info["rate"]
    return info


def check_video(video: dict[str, Any], *, model: str, duration: int, resolution: str) -> bytes:
    """Downloads the MP4 and checks it against the response and the request."""
    fps = VIDEO_MODELS[model].frame_rate
    assert video["content_type"] == "video/mp4"
    assert video["model"] == model and video["resolution"] == resolution
    assert re.fullmatch(r"[0-9a-f]{24}", video["generation_id"])
    assert re.fullmatch(rf"generated-video-{video['generation_id']}-1\.mp4", video["file_name"])
    assert isinstance(video["duration"], int) and video["duration"] == duration
    f = httpx.get(video["url"])  # capability URL: no key needed
    assert f.status_code == 200
    assert f.headers["content-type"] == "video/mp4"
    assert len(f.content) == video["file_size"]
    order = mp4_box_order(f.content)
    assert order[0] == "ftyp" and order.index("moov") < order.index("mdat")
    info = probe(f.content)
    assert (info["codec"], info["pix_fmt"]) == ("h264", "yuv420p")
    assert (info["width"], info["height"]) == (video["width"], video["height"])
    assert info["rate"] == pytest.approx(fps)
    assert abs(info["duration"] - video["duration"]) <= 1 / fps
    assert info["frames"] == video["frame_count"]
    # The resolution names the exact size (the frames are cropped from the model's multiple).
    assert (video["width"], video["height"]) == output_size(resolution, video["aspect_ratio"])
    assert info["audio"] == (["aac"] if model == "ltx-2" else [])
    return f.content


def check_image(url: str) -> Image.Image:
    f = httpx.get(url)
    assert f.status_code == 200
    img = Image.open(io.BytesIO(f.content))
    img.load()
    return img


# The 720p clip is the slow one and nothing in it depends on the database, which
# the 360p clips below already cover on both: one run of it is enough.
@pytest.mark.parametrize("bridge", ["sqlite"], indirect=True, scope="session")
def test_document_defaults(bridge: Bridge) -> None:
    key = bridge.new_key(points=100)
    with bridge.client(key) as c:
        r = c.post(
            "/api/v1/videos",
            json={
                "prompt": "A spaceship flying through a colorful nebula with stars in background"
            },
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["success"] is True
        data = body["data"]
        documented_data = {"video", "generation_time", "remaining_points", "request_id"}
        assert set(data) == documented_data | {"seed"}  # the seed: an addition
        assert data["request_id"] == r.headers["x-request-id"]
        assert isinstance(data["generation_time"], int) and data["generation_time"] > 0
        assert data["remaining_points"] == 100 - price(4, "720p") == 90
        video = data["video"]
        documented = {
            "url", "content_type", "file_name", "file_size", "width", "height", "duration",
            "resolution", "aspect_ratio", "model", "generation_id",
        }  # fmt: skip
        assert documented <= set(video)
        assert video["aspect_ratio"] == "16:9"
        assert (video["width"], video["height"]) == (1280, 720)
        check_video(video, model="vidu-q2", duration=4, resolution="720p")
        thumb = check_image(video["thumbnail"])
        assert thumb.size == (video["width"], video["height"])

        listed = c.get("/api/v1/projects", params={"type": "videos"}).json()["data"]
        images = c.get("/api/v1/projects", params={"type": "images"}).json()["data"]
    assert images["projects"] == []
    assert listed["pagination"]["total"] == 1
    project = listed["projects"][0]
    assert project["id"] == video["generation_id"]
    assert project["type"] == "video"
    assert project["url"] == video["url"]
    assert project["thumbnail"] == video["thumbnail"] != video["url"]
    assert project["metadata"] == {
        "aspect_ratio": "16:9",
        "file_size": video["file_size"],
        "dimensions": "1280x720",
        "duration": 4,
        "resolution": "720p",
        "model": "vidu-q2",
        "seed": data["seed"],  # recorded, so the clip can be made again
    }
    assert check_image(project["thumbnail"]).format == "JPEG"


@pytest.mark.parametrize(
    ("model", "duration", "aspect_ratio"),
    [("vidu-q2", 1, "9:16"), ("ltx-2", 2, "16:9")],
)
def test_short_360p_clips(bridge: Bridge, model: str, duration: int, aspect_ratio: str) -> None:
    key = bridge.new_key(points=20)
    payload = {
        "prompt": "A red spaceship",
        "model": model,
        "duration": duration,
        "resolution": "360p",
        "aspect_ratio": aspect_ratio,
    }
    with bridge.client(key) as c:
        r = c.post("/api/v1/videos", json=payload)
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert data["remaining_points"] == 20 - price(duration, "360p")
        video = data["video"]
        assert video["aspect_ratio"] == aspect_ratio
        check_video(video, model=model, duration=duration, resolution="360p")
        ratio_w, ratio_h = (int(x) for x in aspect_ratio.split(":"))
        assert abs(video["width"] / video["height"] / (ratio_w / ratio_h) - 1) < 0.05
        assert min(video["width"], video["height"]) == 360
        projects = c.get("/api/v1/projects", params={"type": "videos"}).json()["data"]["projects"]
    assert [p["id"] for p in projects] == [video["generation_id"]]
    assert projects[0]["metadata"]["duration"] == duration
    assert projects[0]["metadata"]["model"] == model
    assert check_image(projects[0]["thumbnail"]).size == (video["width"], video["height"])
    with Session(bridge.engine) as s:
        gen = s.get(Generation, video["generation_id"])
        assert gen is not None and gen.status == "completed"
        assert gen.points_cost == price(duration, "360p")
        account = s.get(Account, gen.account_id)
        assert account is not None and account.points == data["remaining_points"]


BAD_BODIES = [
    ({"prompt": "a", "model": "sora-9"}, "model"),
    ({"prompt": "a", "model": "nano-banana"}, "model"),
    ({"prompt": "a", "resolution": "480p"}, "resolution"),
    ({"prompt": "a", "resolution": 720}, "resolution"),
    ({"prompt": "a", "aspect_ratio": "21:9"}, "aspect_ratio"),
    ({"prompt": "a", "duration": 0}, "duration"),
    ({"prompt": "a", "duration": -1}, "duration"),
    ({"prompt": "a", "duration": 11}, "duration"),
    ({"prompt": "a", "duration": 2.5}, "duration"),
    ({"prompt": "a", "duration": "4"}, "duration"),
    ({"prompt": "a", "duration": True}, "duration"),
    ({"prompt": "a", "model": "ltx-2", "duration": 11}, "duration"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "a", "fps": 60}, "fps"),
]


@pytest.mark.parametrize(("payload", "field"), BAD_BODIES)
def test_bad_input_is_refused_before_any_work(
    bridge: Bridge, inference: InferenceProc, payload: dict[str, Any], field: str
) -> None:
    key = bridge.new_key(points=100)
    before = bridge.row_counts(), bridge.blob_files(), inference.rpc_count()
    with bridge.client(key) as c:
        r = c.post("/api/v1/videos", json=payload)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["success"] is False
    assert body["code"] == "validation_error"
    assert body["request_id"] == r.headers["x-request-id"]
    assert any(d["field"] == field for d in body["details"]), body
    # No generation row means no debit: the two are written in one transaction.
    assert (bridge.row_counts(), bridge.blob_files(), inference.rpc_count()) == before


def test_insufficient_points_is_refused_before_the_rpc(
    bridge: Bridge, inference: InferenceProc
) -> None:
    key = bridge.new_key(points=price(4, "1080p") - 1)
    before = bridge.row_counts(), inference.rpc_count()
    with bridge.client(key) as c:
        r = c.post("/api/v1/videos", json={"prompt": "a", "resolution": "1080p"})
    assert r.status_code == 402, r.text
    assert r.json()["code"] == "insufficient_points"
    assert (bridge.row_counts(), inference.rpc_count()) == before


def test_timeout_refunds_the_points(tmp_path: Path, logs: Path, inference: InferenceProc) -> None:
    db_url = f"sqlite:///{tmp_path / 'genserve.db'}"
    env = bridge_env(tmp_path, db_url, inference.target, GENSERVE_VIDEO_TIMEOUT_S="0.001")
    proc, base = start_bridge(env, logs)
    engine = make_engine(db_url)
    migrate(engine)
    try:
        bridge = Bridge(base=base, engine=engine, data_dir=tmp_path, proc=proc)
        key = bridge.new_key(points=100)
        with bridge.client(key) as c:
            r = c.post("/api/v1/videos", json={"prompt": "a", "resolution": "360p"})
        assert r.status_code == 504, r.text
        assert r.json()["code"] == "generation_timeout"
        with Session(bridge.engine) as s:
            gen = s.exec(select(Generation)).one()
            account = s.get(Account, gen.account_id)
            assert gen.status == "failed" and gen.kind == "video"
            assert account is not None and account.points == 100
        assert bridge.blob_files() == 0
    finally:
        proc.stop()
        engine.dispose()
