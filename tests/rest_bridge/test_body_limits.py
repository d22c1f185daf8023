"""Every route bounds its request body before anything reads or checks it.

The generation routes, whose bodies may be tens of megabytes, authenticate first
(401 before 413, the body unread); every other route judges the size first.

The big bodies are sent over raw sockets: a declared ``Content-Length`` of 200 MB
with a few real bytes, and a chunked body that would stream 200 MB but stops as
soon as the answer arrives. The bridge's resident memory must not move.
"""

from __future__ import annotations

import json
import select
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from rest_bridge.edge.body_limit import (
    FORM_BODY_LIMIT,
    JSON_BODY_LIMIT,
    three_d_body_limit,
)
from tests.conftest import Bridge
from tests.utils.web import WebUser

HUGE = 200 * 1024 * 1024
CHUNK = 1024 * 1024
THREE_D_LIMIT = three_d_body_limit(20 * 1024 * 1024)
AUTHENTICATED_FIRST = {"/api/v1/images", "/api/v1/videos", "/api/v1/3d"}

LIMITS = [
    ("POST", "/api/v1/images", JSON_BODY_LIMIT),
    ("POST", "/api/v1/videos", JSON_BODY_LIMIT),
    ("POST", "/api/v1/3d", THREE_D_LIMIT),
    ("GET", "/api/v1/projects", JSON_BODY_LIMIT),
    ("GET", "/api/v1/account", JSON_BODY_LIMIT),
    ("GET", "/api/v1/models", JSON_BODY_LIMIT),
    ("GET", "/api/v1/generations/0123456789abcdef01234567", JSON_BODY_LIMIT),
    ("POST", "/api/v1/generations/0123456789abcdef01234567/cancel", JSON_BODY_LIMIT),
    ("POST", "/api/v1/no-such-route", JSON_BODY_LIMIT),
    ("POST", "/v1/images/generations", JSON_BODY_LIMIT),
    ("GET", "/v1/models", JSON_BODY_LIMIT),
    ("POST", "/signup", FORM_BODY_LIMIT),
    ("POST", "/login", FORM_BODY_LIMIT),
    ("POST", "/logout", FORM_BODY_LIMIT),
    ("POST", "/settings/api-keys", FORM_BODY_LIMIT),
    ("POST", "/settings/api-keys/1/revoke", FORM_BODY_LIMIT),
    ("GET", "/healthz", FORM_BODY_LIMIT),
    ("GET", "/files/0123456789abcdef0123456789abcdef/a.png", FORM_BODY_LIMIT),
]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _connect(base: str) -> socket.socket:
    url = urlsplit(base)
    assert url.hostname is not None and url.port is not None
    return socket.create_connection((url.hostname, url.port), timeout=30)


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body (what the bridge sends for a 413)."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            break
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        more = sock.recv(65536)
        if not more:
            break
        body += more
    return status, headers, body


def declared_huge(base: str, method: str, path: str, extra: str = "") -> tuple[int, dict, bytes]:
    """Declares 200 MB, sends 20 real bytes, and reads the answer."""
    with _connect(base) as sock:
        sock.sendall(
            (
                f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {HUGE}\r\n{extra}\r\n"
            ).encode()
            + b'{"prompt": "a tree"'
        )
        return _read_response(sock)


def chunked_huge(base: str, method: str, path: str) -> tuple[int, dict, bytes, int]:
    """Streams up to 200 MB in 1 MB chunks, stopping as soon as an answer arrives."""
    sent = 0
    with _connect(base) as sock:
        sock.sendall(
            (
                f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        chunk = f"{CHUNK:x}\r\n".encode() + b"{" * CHUNK + b"\r\n"
        while sent < HUGE:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += CHUNK
        status, headers, body = _read_response(sock)
    return status, headers, body, sent


def check_413(status: int, headers: dict[str, str], body: bytes, field: str = "body") -> None:
    assert status == 413, body[:500]
    envelope = json.loads(body)
    assert envelope["success"] is False
    assert envelope["code"] == "payload_too_large"
    assert envelope["request_id"] == headers["x-request-id"]
    assert envelope["details"][0]["field"] == field
    assert headers.get("connection") == "close"


def check_401(status: int, headers: dict[str, str], body: bytes) -> None:
    """Refused before the body: the envelope's 401, and the connection closed."""
    assert status == 401, body[:500]
    envelope = json.loads(body)
    assert envelope["code"] == "invalid_api_key"
    assert envelope["request_id"] == headers["x-request-id"]
    assert headers.get("connection") == "close"


def test_a_200_mb_body_without_a_key_is_refused_at_once_and_costs_no_memory(
    bridge: Bridge,
) -> None:
    pid = bridge.proc.popen.pid
    before = rss_kib(pid)
    for _ in range(3):
        started = time.monotonic()
        status, headers, body = declared_huge(bridge.base, "POST", "/api/v1/images")
        check_401(status, headers, body)
        assert time.monotonic() - started < 2.0
        started = time.monotonic()
        status, headers, body, sent = chunked_huge(bridge.base, "POST", "/api/v1/images")
        check_401(status, headers, body)
        assert sent < 64 * CHUNK, f"the bridge read {sent} bytes before answering"
        assert time.monotonic() - started < 10.0
    # Generous: a read-and-parse of one 200 MB body grew the process by over 300 MB.
    assert rss_kib(pid) - before < 40 * 1024


@pytest.mark.parametrize(("method", "path", "limit"), LIMITS)
def test_every_route_refuses_a_body_over_its_limit_before_anything_else(
    bridge: Bridge, method: str, path: str, limit: int
) -> None:
    field = "image_base64" if path == "/api/v1/3d" else "body"
    # No key, no session, no CSRF token: the size is judged first, except on the
    # generation routes, which refuse an unknown caller before judging (or reading) it.
    headers = {"Content-Type": "application/json"}
    if path in AUTHENTICATED_FIRST:
        anonymous = httpx.request(
            method, bridge.base + path, content=b"x" * (limit + 1), headers=headers, timeout=60
        )
        check_401(anonymous.status_code, dict(anonymous.headers), anonymous.content)
        check_401(*chunked_huge(bridge.base, method, path)[:3])
        headers["Authorization"] = f"Bearer {bridge.new_key()}"
    declared = httpx.request(
        method, bridge.base + path, content=b"x" * (limit + 1), headers=headers, timeout=60
    )
    check_413(declared.status_code, dict(declared.headers), declared.content, field)
    if path not in AUTHENTICATED_FIRST:
        status, got, body, _sent = chunked_huge(bridge.base, method, path)
        check_413(status, got, body, field)


def test_a_valid_key_does_not_lift_the_limit(bridge: Bridge) -> None:
    """And its 413 carries the key's rate-limit headers, like its other answers."""
    key = bridge.new_key()
    status, headers, body = declared_huge(
        bridge.base, "POST", "/api/v1/images", extra=f"Authorization: Bearer {key}\r\n"
    )
    check_413(status, headers, body)
    assert headers["x-ratelimit-limit"] == "100"
    assert int(headers["x-ratelimit-remaining"]) == 99
    assert int(headers["x-ratelimit-reset"]) > time.time()


def test_sixteen_anonymous_30_mb_bodies_at_once_are_refused_unread(bridge: Bridge) -> None:
    """They took a bridge from 281 MB to 1,338 MB and it kept it; now none is read."""
    pid = bridge.proc.popen.pid
    before = rss_kib(pid)
    payload = b"{" * (30 * 1024 * 1024)

    def send(_: int) -> httpx.Response:
        return httpx.post(
            bridge.base + "/api/v1/3d",
            content=payload,
            headers={"Content-Type": "application/json"},
            timeout=120,
        )

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, range(16)))
    for r in answers:
        check_401(r.status_code, dict(r.headers), r.content)
    grown = rss_kib(pid) - before
    print(f"bridge RSS {before // 1024} MiB before, grown by {grown // 1024} MiB after 16 x 30 MB")
    assert grown < 40 * 1024


def test_the_longest_prompt_fits_the_json_limit(bridge: Bridge) -> None:
    """4,000 characters, each an escaped surrogate pair, plus other fields: parsed, not a 413."""
    key = bridge.new_key()
    body = json.dumps(
        {
            "prompt": "\U0001f600" * 4000,
            "num_images": 9,
            "webhook_url": "https://e.test/" + "a" * 2000,
        },
        ensure_ascii=True,
    ).encode()
    assert len(body) > 48_000
    with bridge.client(key) as c:
        r = c.post("/api/v1/images", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert [d["field"] for d in r.json()["details"]] == ["num_images"]


def test_a_form_under_the_limit_is_served(bridge: Bridge) -> None:
    with WebUser(bridge.base) as user:
        user.password = "p" * 1024
        r = user.signup()
    assert r.status_code == 303, r.text
