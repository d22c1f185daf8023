"""In headless Chromium: the playground's mask brush, the video posters, and ``/`` signed out.

Screenshots go to the test's tmp folder (or ``GENSERVE_SCREENSHOTS``) to be looked at.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import Browser, Request, expect

from tests.browser.test_studio_pages import _sign_up_with_key, _until, _watched
from tests.conftest import Bridge

SQLITE = pytest.mark.parametrize("bridge", ["sqlite"], indirect=True)


def _shots(tmp_path: Path) -> Path:
    return Path(os.environ.get("GENSERVE_SCREENSHOTS", tmp_path))


def _data_url_image(value: str) -> Image.Image:
    head, _, data = value.partition(",")
    assert head == "data:image/png;base64", head
    return Image.open(io.BytesIO(base64.b64decode(data)))


@SQLITE
def test_a_mask_painted_with_the_brush_goes_out_white_on_black(
    bridge: Bridge, browser: Browser, tmp_path: Path
) -> None:
    with _watched(browser, bridge.base, {"width": 1200, "height": 1400}) as (page, errors, blocked):
        sent: list[dict[str, Any]] = []

        def note(request: Request) -> None:
            if request.method == "POST" and request.url == f"{bridge.base}/api/v1/images":
                sent.append(json.loads(request.post_data or "{}"))

        page.on("request", note)
        key = _sign_up_with_key(page)
        page.goto("/playground")
        _until(page, "document.body.dataset.params === '1'")
        picture = tmp_path / "garden.png"
        Image.new("RGB", (128, 128), (30, 140, 60)).save(picture)
        page.set_input_files("#image", str(picture))
        canvas = page.locator("#mask-canvas")
        expect(canvas).to_be_visible()
        box = canvas.bounding_box()
        assert box is not None
        side = page.eval_on_selector("#mask-canvas", "c => [c.width, c.height]")
        assert side == [256, 256]
        scale = box["width"] / side[0]

        def at(x: float, y: float) -> tuple[float, float]:  # canvas pixels to the page's
            return box["x"] + x * scale, box["y"] + y * scale

        # Two quick strokes (a few pointer events each, far apart, as a fast hand makes):
        # a horizontal one across the top, a vertical one down the right.
        for start, end in (((40, 60), (200, 60)), ((200, 100), (200, 220))):
            page.mouse.move(*at(*start))
            page.mouse.down()
            page.mouse.move(*at(*end), steps=3)
            page.mouse.up()
        page.fill("#prompt", "a pond in the garden")
        page.screenshot(path=str(_shots(tmp_path) / "mask-painted.png"), full_page=True)
        page.click("#go")
        expect(page.locator("#status")).to_have_text("Done", timeout=60_000)
        expect(page.locator("#result img.output")).to_have_count(1)
        _until(page, "document.querySelector('#result img.output').naturalWidth > 0")
        page.screenshot(path=str(_shots(tmp_path) / "mask-result.png"), full_page=True)

        assert len(sent) == 1
        body = sent[0]
        assert body["prompt"] == "a pond in the garden"
        assert body["image_base64"].startswith("data:image/png;base64,")
        mask = _data_url_image(body["mask_base64"]).convert("RGB")
        assert mask.size == (256, 256)
        painted = [(x, 60) for x in range(40, 201, 20)] + [(200, y) for y in range(100, 221, 20)]
        for point in painted:  # all along the strokes: white, no gaps between events
            assert mask.getpixel(point) == (255, 255, 255), point
        for point in ((10, 10), (128, 160), (60, 200), (250, 250), (120, 100)):  # elsewhere: black
            assert mask.getpixel(point) == (0, 0, 0), point
        pixels = list(mask.getdata())
        assert all(r == g == b for r, g, b in pixels)  # greys only (the brush's soft edge)
        white = sum(1 for p in pixels if p == (255, 255, 255)) / len(pixels)
        assert 0.05 < white < 0.3, white

        shown = page.eval_on_selector("#result img.output", "i => i.src")
        with bridge.client(key) as api:
            project = api.get("/api/v1/projects", params={"limit": 1}).json()["data"]
            project = project["projects"][0]
            kept = api.get(project["metadata"]["mask_image"])
        assert shown == project["url"]  # the answer, shown
        with Image.open(io.BytesIO(kept.content)) as stored:  # the mask kept with the project
            assert stored.convert("RGB").getpixel((120, 60)) == (255, 255, 255)
        assert project["metadata"].get("mask_image") and project["metadata"].get("input_image")
        assert errors == [], errors
        assert blocked == [], blocked


@SQLITE
def test_video_cards_show_the_full_size_poster(
    bridge: Bridge, browser: Browser, tmp_path: Path
) -> None:
    with _watched(browser, bridge.base, {"width": 1200, "height": 900}) as (page, errors, blocked):
        key = _sign_up_with_key(page)
        with bridge.client(key) as api:
            made = api.post(
                "/api/v1/videos",
                json={"prompt": "waves on a shore", "duration": 1, "resolution": "360p"},
            )
            assert made.status_code == 200, made.text
            project = api.get("/api/v1/projects").json()["data"]["projects"][0]
        assert project["poster"]

        page.goto("/projects")
        video = page.locator(".project[data-type=video] video")
        expect(video).to_have_count(1)
        expect(video).to_have_attribute("poster", project["poster"])
        size = page.evaluate(
            """src => new Promise(done => { const i = new Image();
                 i.onload = () => done([i.naturalWidth, i.naturalHeight]);
                 i.onerror = () => done(null); i.src = src; })""",
            project["poster"],
        )
        assert size == [640, 360]  # the poster at the video's own size
        _until(page, "document.querySelector('.project video').readyState >= 1")
        page.screenshot(path=str(_shots(tmp_path) / "video-card.png"))
        page.locator(".project[data-type=video] p").first.click()  # the video itself plays
        expect(page.locator("#view-media video")).to_have_attribute("poster", project["poster"])
        page.screenshot(path=str(_shots(tmp_path) / "video-view.png"))
        assert errors == [], errors
        assert blocked == [], blocked


@SQLITE
def test_a_signed_out_visit_to_the_root_leads_to_a_working_log_in(
    bridge: Bridge, browser: Browser, tmp_path: Path
) -> None:
    with _watched(browser, bridge.base, {"width": 1000, "height": 700}) as (page, errors, blocked):
        statuses: list[int] = []
        page.on("response", lambda r: statuses.append(r.status))
        page.goto("/")
        expect(page).to_have_url(re.compile(r"/login$"))
        expect(page.locator("h1")).to_have_text("Log in")
        for field in ("#email", "#password", "#submit"):
            expect(page.locator(field)).to_be_visible()
        page.screenshot(path=str(_shots(tmp_path) / "signed-out-root.png"))
        page.get_by_role("link", name="Create an account").click()
        expect(page).to_have_url(re.compile(r"/signup$"))
        expect(page.locator("#submit")).to_have_text("Sign up")
        assert all(status < 400 for status in statuses), statuses
        assert errors == [], errors
        assert blocked == [], blocked
