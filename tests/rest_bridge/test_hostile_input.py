"""No input gives a 5xx, on SQLite or PostgreSQL: hostile strings in every field, header and
path segment of the contract's routes and the web forms.

Decisions, per field:

- JSON string fields (prompt, model, webhook_url, image_url, image_base64, the option
  names): a NUL, another C0 control character (tab and line breaks aside), DEL or a lone
  surrogate is a 422 ``validation_error`` naming the field; odd but valid Unicode (right-
  to-left marks, a BOM, emoji, noncharacters) is served like any other text.
- Path identifiers that cannot exist (a generation id that is not 24 lowercase hex
  characters, a file token or name the bridge never wrote): 404 without a query.
- Headers: a bad ``Authorization`` is a 401, a bad ``Idempotency-Key`` a 400
  ``invalid_request``; ``Prefer``, ``Accept``, ``Last-Event-ID`` and ``X-Forwarded-For``
  that mean nothing are ignored.
- Query parameters out of their type or range: 400 ``invalid_request``.
- Web forms: an email or password with a NUL is no email or password (422 on sign-up,
  401 on log-in); a key name that is not printable is a 422; a key id that is not
  ASCII digits is a 404; a malformed ``Origin``/``Referer`` is another origin (403).
"""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest

from tests.conftest import Bridge
from tests.utils.web import CSRF_FIELD, WebUser

NOT_TEXT = {
    "nul": "\x00",
    "nul-inside": "a lamp\x00 on a desk",
    "lone-high-surrogate": "\ud800",
    "lone-low-surrogate": "a \udfff b",
    "escape-sequence": "\x1b[31mred\x1b[0m",
    "bell-and-backspace": "a\x07b\x08c",
    "delete": "a\x7fb",
}
"""Refused (422) in every JSON string field."""

ODD_BUT_TEXT = {
    "rtl-bom": "\u202ea \ufeffdoor\u202c",
    "emoji": "\U0001f600 \U0001f3d4 mountains",
    "noncharacter": "a \uffff b \U0010ffff",
    "c1-and-separators": "a\u0085b\u2028c\u2029d",
    "sql": "'; DROP TABLE generations; --",
    "path": "../../../../etc/passwd",
    "percent": "%00%ff%ED%A0%80",
    "html": "<script>alert(1)</script>",
}
"""Served as text where text is free (a prompt); refused by the options' own rules elsewhere."""

LONG = {"long-ascii": "x" * 60_000, "long-utf8": "\u00e9" * 10_000}

ALL = {**NOT_TEXT, **ODD_BUT_TEXT, **LONG}

FIELDS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "/api/v1/images": (
        {"prompt": "a red chair"},
        ["prompt", "model", "aspect_ratio", "output_format", "webhook_url"],
    ),
    "/api/v1/videos": (
        {"prompt": "a red chair", "duration": 1, "resolution": "360p"},
        ["prompt", "model", "resolution", "aspect_ratio", "webhook_url"],
    ),
    "/api/v1/3d": (
        {"image_url": "https://example.test/a.png"},
        [
            "image_url",
            "image_base64",
            "texture_quality",
            "texture_alignment",
            "orientation",
            "model",
            "webhook_url",
        ],
    ),
}


def _post_json(c: httpx.Client, path: str, payload: Any, **headers: str) -> httpx.Response:
    """JSON with ``\\uXXXX`` escapes, so a lone surrogate travels as JSON can carry it."""
    return c.post(
        path,
        content=json.dumps(payload, ensure_ascii=True).encode(),
        headers={"Content-Type": "application/json", **headers},
    )


def _no_5xx(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code < 500, (r.status_code, r.text[:500])
    if r.headers.get("content-type", "").startswith("application/json"):
        body: dict[str, Any] = r.json()
        if body.get("success") is False:
            assert body["request_id"] == r.headers["x-request-id"]
        return body
    return {}


@pytest.fixture(scope="module")
def keys(bridge: Bridge) -> Iterator[str]:
    yield bridge.new_key(points=100_000, plan="enterprise")


@pytest.mark.parametrize("path", list(FIELDS))
def test_every_json_string_field_refuses_what_is_not_text(
    bridge: Bridge, keys: str, path: str
) -> None:
    base, fields = FIELDS[path]
    before = bridge.row_counts()
    with bridge.client(keys) as c:
        for field in fields:
            for name, value in NOT_TEXT.items():
                r = _post_json(c, path, {**base, field: value})
                body = _no_5xx(r)
                assert r.status_code == 422, (field, name, r.text[:300])
                assert body["code"] == "validation_error"
                assert field in [d["field"] for d in body["details"]], (field, name, body)
        # A field name that is not text is refused like any unknown field.
        r = _post_json(c, path, {**base, "\ud800\x00": 1})
        assert _no_5xx(r)["code"] == "validation_error"
    assert bridge.row_counts() == before


@pytest.mark.parametrize("path", list(FIELDS))
def test_odd_and_long_strings_never_fail_the_server(bridge: Bridge, keys: str, path: str) -> None:
    """Each is refused by the field's own rule (an unknown option, a bad URL, too long)."""
    base, fields = FIELDS[path]
    with bridge.client(keys) as c:
        for field in fields:
            if field == "prompt":
                continue  # served: see the next test
            for name, value in {**ODD_BUT_TEXT, **LONG}.items():
                r = _post_json(c, path, {**base, field: value})
                _no_5xx(r)
                assert r.status_code in (413, 422), (field, name, r.status_code, r.text[:300])


def test_a_prompt_of_odd_unicode_is_stored_and_listed(bridge: Bridge, keys: str) -> None:
    prompt = " ".join(ODD_BUT_TEXT.values()) + " \t tab and\nline breaks"
    with bridge.client(keys) as c:
        r = _post_json(c, "/api/v1/images", {"prompt": prompt})
        assert r.status_code == 200, r.text
        generation_id = r.json()["data"]["generation_id"]
        listed = c.get("/api/v1/projects", params={"type": "images", "limit": 100})
    assert listed.status_code == 200
    project = next(p for p in listed.json()["data"]["projects"] if p["id"] == generation_id)
    assert project["prompt"] == prompt.strip()
    for name, value in LONG.items():
        with bridge.client(keys) as c:
            r = _post_json(c, "/api/v1/images", {"prompt": value})
        assert r.status_code == 422, (name, r.text[:300])


def test_a_body_that_is_not_utf8_json_is_an_invalid_request(bridge: Bridge, keys: str) -> None:
    with bridge.client(keys) as c:
        for raw in [b'{"prompt": "\xff\xfe"}', b"\xed\xa0\x80", b'{"prompt": "a"', b"\x00"]:
            r = c.post("/api/v1/images", content=raw, headers={"Content-Type": "application/json"})
            assert _no_5xx(r)["code"] == "invalid_request", (raw, r.text)


# --- headers -------------------------------------------------------------------------

HEADER_VALUES = {
    "latin1-high": b"\xff\xfe\xfd",
    "utf8-surrogate-bytes": b"\xed\xa0\x80",
    "superscript-two": b"\xb2",
    "long": b"x" * 8000,
    "long-digits": b"9" * 6000,
    "percent-nul": b"%00",
    "c1": b"a\x85b",
    "bearer-latin1": b"Bearer gsk_\xb2\xff",
    "ipv6-open": b"[",
    "commas": b",,,, ,",
}


def _own_generation(bridge: Bridge, key: str) -> str:
    with bridge.client(key) as c:
        r = c.post("/api/v1/images", json={"prompt": "a pebble"})
    assert r.status_code == 200, r.text
    generation_id: str = r.json()["data"]["generation_id"]
    return generation_id


@pytest.mark.parametrize(
    "header",
    ["Authorization", "Prefer", "Accept", "Last-Event-ID", "X-Forwarded-For", "Referer", "Origin"],
)
def test_hostile_header_values_never_fail_the_server(
    bridge: Bridge, keys: str, header: str
) -> None:
    generation_id = _own_generation(bridge, keys)
    gets = [
        "/api/v1/account",
        "/api/v1/projects",
        "/api/v1/models",
        f"/api/v1/generations/{generation_id}",
        f"/api/v1/generations/{generation_id}/events",
        "/healthz",
    ]
    for value in HEADER_VALUES.values():
        headers = {header: value}
        if header != "Authorization":
            headers["Authorization"] = f"Bearer {keys}".encode()
        with httpx.Client(base_url=bridge.base, timeout=60) as c:
            for path in gets:
                r = c.get(path, headers=headers)
                body = _no_5xx(r)
                if header == "Authorization":
                    assert r.status_code in (200, 401), (path, value, r.text[:200])
                    if path != "/healthz":
                        assert body["code"] == "invalid_api_key"
                else:
                    assert r.status_code == 200, (header, path, value, r.text[:200])
            # A refusal still reads the header: an invalid body keeps the generation away.
            r = c.post("/api/v1/images", json={"prompt": ""}, headers=headers)
            assert _no_5xx(r)["code"] in ("validation_error", "invalid_api_key")


def test_hostile_idempotency_keys(bridge: Bridge, keys: str) -> None:
    with bridge.client(keys) as c:
        for name, value in HEADER_VALUES.items():
            r = c.post("/api/v1/images", json={"prompt": ""}, headers={"Idempotency-Key": value})
            assert _no_5xx(r)["code"] in ("invalid_request", "validation_error"), (name, r.text)
        # Printable Latin-1 is a key like any other: claimed, stored and replayed.
        first = c.post(
            "/api/v1/images", json={"prompt": "a cup"}, headers={"Idempotency-Key": b"\xb2\xff k"}
        )
        again = c.post(
            "/api/v1/images", json={"prompt": "a cup"}, headers={"Idempotency-Key": b"\xb2\xff k"}
        )
    assert first.status_code == 200, first.text
    assert again.headers["idempotent-replayed"] == "true"


def _raw_request(base: str, head: bytes) -> int | None:
    """Sends bytes no HTTP client would; the status, or None when the server just closes."""
    url = urlsplit(base)
    assert url.hostname and url.port
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(head)
        data = b""
        while b"\r\n" not in data:
            more = sock.recv(4096)
            if not more:
                return None
            data += more
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize("byte", [b"\x00", b"\x01", b"\x7f", b"\x1b"])
def test_control_bytes_in_headers_are_refused_by_the_server(
    bridge: Bridge, keys: str, byte: bytes
) -> None:
    for name in (b"Authorization", b"Idempotency-Key", b"Last-Event-ID", b"X-Forwarded-For"):
        status = _raw_request(
            bridge.base,
            b"GET /api/v1/account HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + name
            + b": a"
            + byte
            + b"b\r\n\r\n",
        )
        assert status is None or status < 500, (name, byte, status)


def test_a_hostile_host_header(bridge: Bridge, keys: str) -> None:
    for host in (b"[", b"\xff", b"a" * 4000, b"x:99999999", b""):
        with httpx.Client(base_url=bridge.base, timeout=60) as c:
            for path in ("/api/v1/account", "/signup", "/api/v1/nope"):
                headers = {"Host": host, "Authorization": f"Bearer {keys}".encode()}
                _no_5xx(c.get(path, headers=headers))
            _no_5xx(c.post("/api/v1/images", json={"prompt": ""}, headers=headers))


# --- paths and queries ------------------------------------------------------------------

SEGMENTS = [
    "%00",
    "abc%00def",
    "%ED%A0%80",
    "%FF%FE",
    "%C2%B2",
    "a" * 5000,
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e",
    "0123456789abcdef0123456G",
    "0123456789ABCDEF01234567",
    "0123456789abcdef012345678",
    "%20",
    "%F0%9F%98%80",
]


def test_generation_ids_that_cannot_exist_are_404(bridge: Bridge, keys: str) -> None:
    with bridge.client(keys) as c:
        for segment in SEGMENTS:
            for method, suffix in (("GET", ""), ("GET", "/events"), ("POST", "/cancel")):
                r = c.request(method, f"/api/v1/generations/{segment}{suffix}")
                body = _no_5xx(r)
                assert r.status_code == 404, (segment, suffix, r.text[:200])
                assert body["code"] == "not_found"


def test_file_paths_that_cannot_exist_are_404(bridge: Bridge) -> None:
    token = secrets.token_hex(16)
    with httpx.Client(base_url=bridge.base, timeout=60) as c:
        for segment in SEGMENTS:
            for path in (f"/files/{segment}/a.png", f"/files/{token}/{segment}"):
                r = c.get(path)
                _no_5xx(r)
                assert r.status_code == 404, (path[:80], r.text[:200])


def test_hostile_query_parameters_are_invalid_requests(bridge: Bridge, keys: str) -> None:
    values = [quote(v, safe="") for v in ("\x00", "\u00b2", "1e3", "-1", "9" * 5000, "")] + [
        "%ED%A0%80",
        "%FF",
    ]
    with bridge.client(keys) as c:
        for param in ("type", "page", "limit", "sort", "order"):
            for value in values:
                r = c.get(f"/api/v1/projects?{param}={value}")
                body = _no_5xx(r)
                assert r.status_code in (200, 400), (param, value, r.text[:200])
                if r.status_code == 400:
                    assert body["code"] == "invalid_request"
        # Names of parameters too, and one that could be a key.
        _no_5xx(c.get("/api/v1/projects?%00=1&%ED%A0%80=2"))


# --- web forms ------------------------------------------------------------------------


def _form(fields: dict[str, str]) -> bytes:
    """URL-encoded, the values already percent-encoded where they must carry raw bytes."""
    return "&".join(f"{k}={v}" for k, v in fields.items()).encode()


FORM_VALUES = {
    "nul": "%00",
    "nul-inside": "user%00x%40example.test",
    "surrogate-bytes": "%ED%A0%80%40example.test",
    "invalid-utf8": "%FF%FE%40example.test",
    "control": "a%01b%1B%40example.test",
    "long": "a" * 5000 + "%40example.test",
    "rtl": quote("\u202euser@example.test"),
}


def test_hostile_sign_up_and_log_in_fields(bridge: Bridge) -> None:
    for form_field in ("email", "password", "csrf"):
        for name, value in FORM_VALUES.items():
            with WebUser(bridge.base) as user:
                for mode in ("signup", "login"):
                    csrf = user.csrf(f"/{mode}")
                    fields = {
                        "csrf": quote(csrf),
                        "email": quote(user.email),
                        "password": quote(user.password),
                    }
                    fields[form_field] = value
                    r = user.http.post(
                        f"/{mode}",
                        content=_form(fields),
                        headers={"Content-Type": "application/x-www-form-urlencoded"},
                    )
                    assert r.status_code < 500, (mode, form_field, name, r.status_code)
                    if form_field == "email" and name in ("nul", "nul-inside", "control"):
                        assert r.status_code == (422 if mode == "signup" else 401), (mode, name)


def test_a_malformed_origin_or_referer_is_another_origin(bridge: Bridge) -> None:
    for header in ("Origin", "Referer"):
        for value in (b"http://[", b"http://[::1", b"\xff://\xfe", b"null", b"a" * 5000):
            with WebUser(bridge.base) as user:
                csrf = user.csrf("/login")
                r = user.http.post(
                    "/login",
                    data={"csrf": csrf, "email": user.email, "password": user.password},
                    headers={header: value},
                )
            assert r.status_code == 403, (header, value[:20], r.status_code)


def test_hostile_key_names_ids_and_cookies(bridge: Bridge) -> None:
    with WebUser(bridge.base) as user:
        assert user.signup().status_code == 303
        for value in FORM_VALUES.values():
            csrf = user.csrf("/settings/api-keys")
            r = user.http.post(
                "/settings/api-keys",
                content=_form({"csrf": quote(csrf), "name": value}),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert r.status_code < 500, (value[:40], r.status_code)
        for segment in ("%C2%B2", "%00", "%ED%A0%80", "9" * 40, "-1", "%D9%A3"):
            csrf = user.csrf("/settings/api-keys")
            r = user.http.post(f"/settings/api-keys/{segment}/revoke", data={"csrf": csrf})
            assert r.status_code == 404, (segment, r.status_code)
        page = user.http.get("/settings/api-keys")
        assert CSRF_FIELD.search(page.text)
    for cookie in ('"\\000abc"', '"\\377"', "a" * 4000, "%00", '"\\"'):
        for path in ("/", "/settings/api-keys", "/signup"):
            r = httpx.get(
                bridge.base + path,
                headers={"Cookie": f"gs_session={cookie}; gs_form={cookie}"},
                timeout=60,
            )
            assert r.status_code < 500, (cookie, path, r.status_code)
