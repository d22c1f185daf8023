"""A browser-like HTTP client for the web pages: cookies kept, forms read from the pages."""

from __future__ import annotations

import re
import secrets
from types import TracebackType

import httpx

CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')
NEW_KEY = re.compile(r'<code class="new-key" id="new-key">(gsk_[0-9A-Za-z]+)</code>')
KEY_ROW = re.compile(r'<tr data-key-id="(\d+)">')


def new_email() -> str:
    return f"user-{secrets.token_hex(6)}@example.test"


class WebUser:
    """One browser: a cookie jar, no redirects followed, so each answer can be checked."""

    def __init__(self, base: str, address: str | None = None) -> None:
        headers = {"X-Forwarded-For": address} if address else {}
        self.http = httpx.Client(base_url=base, follow_redirects=False, timeout=60, headers=headers)
        self.email = new_email()
        self.password = "correct horse " + secrets.token_hex(4)

    def __enter__(self) -> WebUser:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.http.close()

    def csrf(self, path: str) -> str:
        page = self.http.get(path)
        assert page.status_code == 200, page.text
        found = CSRF_FIELD.search(page.text)
        assert found is not None, page.text
        return found.group(1)

    def signup(self, **extra: str) -> httpx.Response:
        form = {"csrf": self.csrf("/signup"), "email": self.email, "password": self.password}
        return self.http.post("/signup", data={**form, **extra})

    def login(self, password: str | None = None) -> httpx.Response:
        form = {
            "csrf": self.csrf("/login"),
            "email": self.email,
            "password": self.password if password is None else password,
        }
        return self.http.post("/login", data=form)

    def keys_page(self) -> httpx.Response:
        return self.http.get("/settings/api-keys")

    def create_key(self, name: str = "laptop", **extra: str) -> httpx.Response:
        csrf = self.csrf("/settings/api-keys")
        return self.http.post("/settings/api-keys", data={"csrf": csrf, "name": name, **extra})

    def new_key(self, name: str = "laptop") -> tuple[int, str]:
        """Creates a key; returns its id and the plaintext read from the page it redirects to."""
        created = self.create_key(name)
        assert created.status_code == 303, created.text
        assert created.headers["location"] == "/settings/api-keys"
        r = self.http.get(created.headers["location"])
        assert r.status_code == 200, r.text
        found = NEW_KEY.search(r.text)
        assert found is not None, r.text
        ids = [int(i) for i in KEY_ROW.findall(r.text)]
        return max(ids), found.group(1)

    def revoke(self, key_id: int) -> httpx.Response:
        csrf = self.csrf("/settings/api-keys")
        return self.http.post(f"/settings/api-keys/{key_id}/revoke", data={"csrf": csrf})

    def logout(self) -> httpx.Response:
        csrf = self.csrf("/settings/api-keys")
        return self.http.post("/logout", data={"csrf": csrf})
