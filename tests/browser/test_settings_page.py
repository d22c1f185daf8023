"""Settings → API Keys in a real browser: headless Chromium (Debian's) driven by Playwright.

Sign up, create a key, read it from the page (and from the clipboard after the
copy button), reload and see it gone with no second key made, call the API with it,
revoke it, and see the next call refused.
"""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import Bridge
from tests.utils.web import new_email


def _api(bridge: Bridge, key: str) -> httpx.Response:
    return httpx.get(bridge.base + "/api/v1/account", headers={"Authorization": f"Bearer {key}"})


@pytest.mark.parametrize("bridge", ["sqlite"], indirect=True)
def test_sign_up_create_use_and_revoke_a_key(bridge: Bridge, browser: Browser) -> None:
    context = browser.new_context(base_url=bridge.base)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=bridge.base)
    page: Page = context.new_page()
    try:
        page.goto("/signup")
        page.fill("#email", new_email())
        page.fill("#password", "a browser's long password")
        page.click("#submit")
        expect(page).to_have_url(re.compile(r"/settings/api-keys$"))
        expect(page.locator("#plan")).to_have_text("Free")
        expect(page.locator("#points")).to_have_text("100")

        page.fill("#key-name", "from the browser")
        page.click("#create-key")
        key = page.locator("#new-key").inner_text().strip()
        assert re.fullmatch(r"gsk_[0-9A-Za-z]{38}", key), key
        expect(page.locator("#new-key-panel")).to_contain_text("won't be shown again")
        page.click("#copy-key")
        expect(page.locator("#copy-key")).to_have_text("Copied")
        assert page.evaluate("navigator.clipboard.readText()") == key
        expect(page).to_have_url(re.compile(r"/settings/api-keys$"))  # redirected after the POST
        keys_before = page.locator("tr[data-key-id]").count()
        assert keys_before == 1

        page.reload()  # post/redirect/get: the reload is a GET; the key is gone, none is made
        expect(page.locator("#new-key")).to_have_count(0)
        assert key not in page.content()
        expect(page.locator("tr[data-key-id]")).to_have_count(keys_before)

        first = _api(bridge, key)
        assert first.status_code == 200, first.text
        assert first.json()["data"]["points"] == 100

        page.goto("/settings/api-keys")  # shown once: never again
        assert key not in page.content()
        row = page.locator("tr", has_text="from the browser")
        expect(row.locator(".key-mask")).to_have_text(f"{key[:8]}…{key[-4:]}")
        expect(row.locator(".key-usage")).to_have_text("1 / 100")
        expect(row.locator(".key-last-used time")).to_have_count(1)

        row.locator("button.revoke").click()
        expect(page).to_have_url(re.compile(r"/settings/api-keys$"))
        expect(page.locator("tr", has_text="from the browser")).to_have_count(0)

        after = _api(bridge, key)
        assert after.status_code == 401
        assert after.json()["code"] == "invalid_api_key"

        page.click("#logout")
        expect(page).to_have_url(re.compile(r"/login$"))
        page.goto("/settings/api-keys")
        expect(page).to_have_url(re.compile(r"/login$"))
    finally:
        context.close()
