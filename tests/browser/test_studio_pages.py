"""/playground and /projects in headless Chromium, every request off this bridge blocked.

Sign up and make a key, generate an image from the playground (queue, progress bar, live
previews, result, points left), then see it, a video and a 3D model on /projects. Both
pages are clients of the public API: every call they make goes to ``/api/v1`` with the
session cookie and the session's CSRF token.
"""

from __future__ import annotations

import base64
import io
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, Route, ViewportSize, expect

from tests.conftest import Bridge
from tests.utils.web import new_email


def _until(page: Page, expression: str, timeout: float = 30.0) -> None:
    """Waits until ``expression`` is true in the page. Polled from here with ``evaluate``
    (the DevTools protocol), not ``wait_for_function``, whose polling ``eval``s the
    expression inside the page, which the pages' CSP (no ``unsafe-eval``) refuses."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"not true after {timeout} s: {expression}"
        time.sleep(0.05)


def _offline(context: BrowserContext, base: str) -> list[str]:
    """Aborts every request that does not go to the bridge; returns the ones it aborted."""
    blocked: list[str] = []

    def handle(route: Route) -> None:
        if route.request.url.startswith(base) or route.request.url.startswith("data:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", handle)
    return blocked


@contextmanager
def _watched(
    browser: Browser, base: str, viewport: ViewportSize | None = None
) -> Iterator[tuple[Page, list[str], list[str]]]:
    """A page of a new context, offline but for ``base`` (``_offline``): the page, the
    errors thrown in it and the requests it tried elsewhere; the context closed after."""
    context = browser.new_context(base_url=base, viewport=viewport)  # None: the default size
    blocked = _offline(context, base)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page, errors, blocked
    finally:
        context.close()


def _sign_up_with_key(page: Page) -> str:
    page.goto("/signup")
    page.fill("#email", new_email())
    page.fill("#password", "a browser's long password")
    page.click("#submit")
    expect(page).to_have_url(re.compile(r"/settings/api-keys$"))
    page.fill("#key-name", "studio")
    page.click("#create-key")
    return page.locator("#new-key").inner_text().strip()


def _png() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (48, 48), (200, 40, 40)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize("bridge", ["sqlite"], indirect=True)
def test_playground_then_projects(bridge: Bridge, browser: Browser, tmp_path: Path) -> None:
    with _watched(browser, bridge.base) as (page, errors, blocked):
        calls: list[tuple[str, str, bool]] = []  # the pages' fetches: method, path, CSRF header
        page.on(
            "request",
            lambda r: (
                calls.append((r.method, r.url[len(bridge.base) :], "x-csrf-token" in r.headers))
                if r.resource_type == "fetch"
                else None
            ),
        )
        key = _sign_up_with_key(page)
        page.goto("/playground")
        expect(page.locator("#points")).to_have_text("Points left: 100")
        previews: list[str] = []
        page.expose_function("notePreview", lambda src: previews.append(src))
        page.evaluate(
            """new MutationObserver(() => window.notePreview(
                 document.getElementById('preview').src)).observe(
                 document.getElementById('preview'), {attributes: true})"""
        )
        page.fill("#prompt", "a red cube")
        page.click("#go")
        expect(page.locator("#result img.output")).to_have_count(1, timeout=60_000)
        expect(page.locator("#status")).to_have_text("Done")
        expect(page.locator("#preview")).to_be_hidden()  # the result replaces it
        assert page.eval_on_selector("#bar", "b => [b.value, b.max]") == [4, 4]
        shown = [src for src in previews if src]  # the first change is the image unhidden
        assert shown and all(src.startswith("data:image/jpeg;base64,") for src in shown)
        points = int(page.locator("#points").inner_text().rsplit(" ", 1)[1])
        assert 0 <= points < 100

        page.select_option("#kind", "videos")
        page.fill("#prompt", "a turning cube")
        # the video's parameters, drawn from the OpenAPI schema and the model's values
        expect(page.locator("#param-resolution option")).not_to_have_count(0)
        page.select_option("#param-resolution", "360p")
        page.fill("#param-duration", "1")
        page.click("#go")
        expect(page.locator("#result video.output[controls]")).to_have_count(1, timeout=60_000)
        expect(page.locator("#status")).to_have_text("Done")

        page.select_option("#kind", "3d")
        expect(page.locator("#prompt-field")).to_be_hidden()
        image = tmp_path / "subject.png"
        image.write_bytes(base64.b64decode(_png()))
        page.set_input_files("#image", str(image))
        page.click("#go")
        expect(page.locator("#result a.download")).to_have_text(
            re.compile(r"\.glb$"), timeout=60_000
        )
        expect(page.locator("#status")).to_have_text("Done")
        with bridge.client(key) as api:
            left = api.get("/api/v1/account").json()["data"]["points"]
        expect(page.locator("#points")).to_have_text(f"Points left: {left}")

        posts = [(m, p) for m, p, _ in calls if m == "POST"]
        assert posts == [
            ("POST", "/api/v1/images"),
            ("POST", "/api/v1/videos"),
            ("POST", "/api/v1/3d"),
        ]

        page.goto("/projects")
        expect(page.locator(".project")).to_have_count(3)
        expect(page.locator("#count")).to_have_text("3 projects · page 1 of 1")
        expect(page.locator(".project[data-type=image] p").first).to_have_text("a red cube")
        expect(page.locator(".project[data-type=image] img")).to_have_count(1)
        _until(page, "document.querySelector('.project img').naturalWidth > 0")
        video_el = page.locator(".project[data-type=video] video[controls]")
        expect(video_el).to_have_count(1)
        _until(page, "document.querySelector('video').readyState >= 1")
        canvas = page.locator(".project[data-type='3d'] canvas.glb")
        expect(canvas).to_have_attribute("data-loaded", "1")
        if page.evaluate("!!document.createElement('canvas').getContext('webgl')"):
            _until(page, "Number(document.querySelector('canvas.glb').dataset.frames || 0) > 2")
            # textured from the GLB's own picture, lit, and turned by a drag (mouse or touch)
            expect(canvas).to_have_attribute("data-textured", "1")
            box = canvas.bounding_box()
            assert box is not None
            page.mouse.move(box["x"] + 40, box["y"] + 40)
            page.mouse.down()
            page.mouse.move(box["x"] + 140, box["y"] + 80, steps=5)
            page.mouse.up()
            expect(canvas).to_have_attribute("data-turned", "1")
        if os.environ.get("GENSERVE_SCREENSHOTS"):
            page.screenshot(path=str(Path(os.environ["GENSERVE_SCREENSHOTS"]) / "projects.png"))
            page.locator(".project[data-type='3d']").click()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(Path(os.environ["GENSERVE_SCREENSHOTS"]) / "3d-view.png"))

        page.goto("/projects?type=videos")
        expect(page.locator(".project")).to_have_count(1)
        expect(page.locator(".project[data-type=video]")).to_have_count(1)
        assert ("GET", "/api/v1/projects?type=videos&page=1&limit=12", True) in calls
        fetched = [
            path
            for _, path, _ in calls
            if not path.startswith("/files/") and path != "/openapi.json"
        ]
        assert fetched and all(path.startswith("/api/v1/") for path in fetched), fetched
        assert all(csrf for _, path, csrf in calls if path.startswith("/api/v1/"))
        assert errors == [], errors
        assert blocked == [], blocked


@pytest.mark.parametrize("bridge", ["sqlite"], indirect=True)
def test_the_api_takes_the_session_only_with_its_csrf_token(
    bridge: Bridge, browser: Browser
) -> None:
    context = browser.new_context(base_url=bridge.base)
    _offline(context, bridge.base)
    page = context.new_page()
    try:
        _sign_up_with_key(page)
        page.goto("/playground")
        status = page.evaluate(
            """fetch('/api/v1/images', {method: 'POST', body: JSON.stringify({prompt: 'x'}),
                 headers: {'Content-Type': 'application/json'}}).then(r => r.status)"""
        )
        assert status == 401  # the cookie alone is no credential
        page.goto("/projects")
        expect(page.locator("#empty")).to_be_visible()  # the refused call made nothing
        expect(page.locator("#count")).to_have_text("0 projects · page 1 of 1")
    finally:
        context.close()


def test_pages_send_signed_out_visitors_to_log_in(bridge: Bridge) -> None:
    for path in ("/projects", "/playground"):
        r = httpx.get(bridge.base + path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login"
    r = httpx.post(bridge.base + "/api/v1/images", json={"prompt": "x"})
    assert r.status_code == 401


@pytest.mark.parametrize("bridge", ["sqlite"], indirect=True)
def test_menu_card_view_and_playground_parameters(
    bridge: Bridge, browser: Browser, tmp_path: Path
) -> None:
    """One menu everywhere, ``/`` leads to the projects, a card opens a view with the full
    output, its parameters, download, "use these settings" and delete; the playground draws
    every parameter of the kind from the OpenAPI schema and the model's accepted values."""
    shots = Path(os.environ.get("GENSERVE_SCREENSHOTS", tmp_path))
    with _watched(browser, bridge.base, {"width": 1200, "height": 900}) as (page, errors, blocked):
        key = _sign_up_with_key(page)
        with bridge.client(key) as api:
            made = api.post(
                "/api/v1/images",
                json={"prompt": "a green boat", "aspect_ratio": "16:9", "output_format": "png"},
            )
            assert made.status_code == 200, made.text
            image = made.json()["data"]["images"][0]

        page.goto("/")
        expect(page).to_have_url(re.compile(r"/projects$"))
        for path in ("/projects", "/playground", "/settings/api-keys"):
            page.goto(path)
            menu = page.locator("header #menu a")
            expect(menu).to_have_text(["Projects", "Playground", "API keys"])

        page.goto("/projects")
        expect(page.locator(".project")).to_have_count(1)
        page.locator(".project").click()
        view = page.locator("#view")
        expect(view).to_be_visible()
        shown = page.locator("#view-media img")
        expect(shown).to_have_count(1)
        _until(page, "document.querySelector('#view-media img').naturalWidth > 0")
        assert shown.evaluate("i => i.naturalWidth") == image["width"]  # the full output
        expect(page.locator("#view-params")).to_contain_text("aspect_ratio")
        expect(page.locator("#view-params")).to_contain_text("16:9")
        download = page.locator("#view-download")
        assert download.get_attribute("href") == image["url"]
        with page.expect_download() as got:
            download.click()
        saved = tmp_path / "saved.png"
        got.value.save_as(saved)
        assert saved.stat().st_size == image["file_size"]
        page.screenshot(path=str(shots / "card-view.png"))

        page.click("#view-reuse")
        expect(page).to_have_url(re.compile(r"/playground\?"))
        expect(page.locator("#prompt")).to_have_value("a green boat")
        _until(page, "document.body.dataset.params === '1'")
        expect(page.locator("#param-aspect_ratio")).to_have_value("16:9")
        ratios = page.locator("#param-aspect_ratio option").all_inner_texts()
        assert "16:9" in ratios and "1:1" in ratios
        number = page.locator("#param-num_images")
        assert number.get_attribute("type") == "number" and number.get_attribute("min") == "1"
        expect(page.locator("#param-output_format")).to_have_value("png")
        if page.locator("#param-seed").count():  # the creative controls' seed, where served
            page.click("#dice")
            assert page.locator("#param-seed").input_value().isdigit()
        expect(page.locator("#recent img")).to_have_count(1)
        page.click("#go")
        expect(page.locator("#result img.output")).to_have_count(1, timeout=60_000)
        expect(page.locator("#result a.download")).to_have_count(1)
        _until(page, "document.querySelector('#result img.output').naturalWidth > 0")
        width = page.eval_on_selector("#result img.output", "i => i.naturalWidth")
        assert width > 128  # the full-size output, not a 128 px thumbnail
        expect(page.locator("#recent img")).to_have_count(2)
        page.screenshot(path=str(shots / "playground.png"), full_page=True)

        page.goto("/projects")
        expect(page.locator(".project")).to_have_count(2)
        page.locator(".project").first.click()
        page.click("#view-delete")
        expect(page.locator(".project")).to_have_count(1)
        with bridge.client(key) as api:
            left = api.get("/api/v1/projects").json()["data"]["projects"]
        assert [p["prompt"] for p in left] == ["a green boat"]
        assert errors == [], errors
        assert blocked == [], blocked
