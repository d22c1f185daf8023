"""``/docs`` and ``/redoc`` render with no network: every request off the bridge is aborted."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.conftest import Bridge


def _offline_page(browser: Browser, bridge: Bridge) -> tuple[Page, list[str]]:
    """A page that may reach the bridge and nothing else; the list collects what it tried."""
    own = urlsplit(bridge.base).netloc
    blocked: list[str] = []
    context = browser.new_context(base_url=bridge.base)

    def only_the_bridge(route: Route) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != own:
            blocked.append(url)
            route.abort("internetdisconnected")
        else:
            route.continue_()

    context.route("**/*", only_the_bridge)
    return context.new_page(), blocked


@pytest.mark.parametrize("bridge", ["sqlite"], indirect=True)
def test_swagger_ui_lists_the_operations_offline(bridge: Bridge, browser: Browser) -> None:
    page, blocked = _offline_page(browser, bridge)
    try:
        page.goto("/docs")
        operations = page.locator(".opblock")
        expect(operations.first).to_be_visible(timeout=30_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        normalised = {p.replace("\u200b", "").strip() for p in paths}
        assert {"/api/v1/images", "/api/v1/videos", "/api/v1/3d", "/api/v1/projects"} <= normalised
        assert "/v1/images/generations" in normalised
        expect(page.locator("button.authorize")).to_be_visible()  # the bearer scheme
        assert blocked == [], blocked
    finally:
        page.context.close()


@pytest.mark.parametrize("bridge", ["sqlite"], indirect=True)
def test_redoc_renders_offline(bridge: Bridge, browser: Browser) -> None:
    page, blocked = _offline_page(browser, bridge)
    try:
        page.goto("/redoc")
        expect(page.locator("h1", has_text="genserve")).to_be_visible(timeout=30_000)
        menu = page.locator("[role=menuitem]")
        expect(menu.first).to_be_visible()
        assert menu.count() >= 10
        expect(page.get_by_text("A beautiful sunset over mountains").first).to_be_attached()
        assert blocked == [], blocked
    finally:
        page.context.close()
