"""Live previews in the event stream: ``"preview": N`` on images (and videos)."""

from __future__ import annotations

import base64
import io

from PIL import Image

from tests.conftest import Bridge
from tests.utils.sse import read_events

JPEG_URL = "data:image/jpeg;base64,"


def _stream(bridge: Bridge, path: str, body: dict[str, object]) -> list[tuple[str, dict]]:
    key = bridge.new_key(points=100)
    with (
        bridge.client(key) as c,
        c.stream("POST", path, json=body, headers={"Accept": "text/event-stream"}) as r,
    ):
        assert r.status_code == 200, r.read()
        return [(e.name, e.data) for e in read_events(r)]


def test_image_previews_every_two_steps(bridge: Bridge) -> None:
    events = _stream(bridge, "/api/v1/images", {"prompt": "a red cube", "preview": 2})
    assert events[-1][0] == "completed"
    previews = [data for name, data in events if name == "preview"]
    assert [(p["step"], p["total"]) for p in previews] == [(2, 4), (4, 4)]
    for p in previews:
        assert p["data_url"].startswith(JPEG_URL)
        image = Image.open(io.BytesIO(base64.b64decode(p["data_url"][len(JPEG_URL) :])))
        assert image.format == "JPEG"
        assert image.size == (p["width"], p["height"]) and max(image.size) <= 128
    # each preview follows the progress event of its step
    names = [name for name, _ in events]
    assert names[names.index("preview") - 1] == "progress"


def test_no_previews_by_default_and_true_means_every_two(bridge: Bridge) -> None:
    events = _stream(bridge, "/api/v1/images", {"prompt": "a red cube"})
    assert "preview" not in [name for name, _ in events]
    events = _stream(bridge, "/api/v1/images", {"prompt": "a red cube", "preview": True})
    assert [d["step"] for name, d in events if name == "preview"] == [2, 4]


def test_bad_preview_values_are_refused(bridge: Bridge) -> None:
    key = bridge.new_key(points=100)
    with bridge.client(key) as c:
        for bad in (-1, 201, "2", 1.5):
            r = c.post("/api/v1/images", json={"prompt": "x", "preview": bad})
            assert r.status_code == 422, (bad, r.text)
