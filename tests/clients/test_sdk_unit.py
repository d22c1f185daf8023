"""The SDK's own behaviour, against httpx.MockTransport stand-ins: retries, errors, parsing.

What only a real bridge can show (debits, files, events of real work) is in test_sdk_live.py.
"""

from __future__ import annotations

import asyncio
import json
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import genserve
from genserve import (
    APIConnectionError,
    AsyncClient,
    AuthenticationError,
    Client,
    ConflictError,
    GenerationCancelledError,
    GenerationTimeoutError,
    GenserveError,
    ImageResult,
    InsufficientPointsError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    ValidationError,
)
from genserve._sse import SseDecoder
from genserve.config import resolve, save_config
from genserve.errors import error_from_envelope, parse_retry_after
from genserve.progress import PlainDisplay, RichDisplay, make_display
from genserve.results import Event, result_from_data

BASE = "http://genserve.test"
IMAGE_DATA = {
    "images": [
        {
            "url": f"{BASE}/files/{'a' * 32}/generated-image-1.webp",
            "content_type": "image/webp",
            "file_name": "generated-image-1.webp",
            "file_size": 4,
            "width": 128,
            "height": 72,
            "aspect_ratio": "16:9",
            "brand_new_field": [1, 2],
        }
    ],
    "generation_id": "507f1f77bcf86cd799439011",
    "generation_time": 2450,
    "remaining_points": 92,
    "request_id": "req_123",
    "something_newer": {"x": 1},
}


def ok(data: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"success": True, "data": data}, headers=headers)


def refused(status: int, code: str, **headers: str) -> httpx.Response:
    body: dict[str, Any] = {
        "success": False,
        "error": f"a sentence about {code}",
        "code": code,
        "request_id": "req_err",
    }
    if code == "validation_error":
        body["details"] = [{"field": "aspect_ratio", "message": "must be one of ..."}]
    return httpx.Response(status, json=body, headers={"X-Request-ID": "req_err", **headers})


Handler = Callable[[httpx.Request], httpx.Response]


def client_with(handler: Handler, **kwargs: Any) -> Client:
    return Client(
        api_key="gsk_test", base_url=BASE, transport=httpx.MockTransport(handler), **kwargs
    )


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No developer's own login or environment leaks into these tests."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("GENSERVE_CONFIG", raising=False)
    monkeypatch.delenv("GENSERVE_BASE_URL", raising=False)
    monkeypatch.delenv("GENSERVE_API_KEY", raising=False)


# ---------------------------------------------------------------- retries


def test_503_with_retry_after_is_retried_with_the_same_idempotency_key() -> None:
    seen: list[tuple[float, httpx.Request]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((time.monotonic(), request))
        if len(seen) == 1:
            return refused(503, "overloaded", **{"Retry-After": "1"})
        return ok(IMAGE_DATA)

    with client_with(handler) as client:
        result = client.images.generate("a fox", aspect_ratio="16:9")
    assert isinstance(result, ImageResult)
    assert len(seen) == 2
    keys = [r.headers.get("idempotency-key") for _, r in seen]
    assert keys[0] and keys[0] == keys[1]
    assert seen[1][0] - seen[0][0] >= 1.0, "Retry-After was not honoured"
    assert seen[0][1].content == seen[1][1].content
    assert json.loads(seen[0][1].content) == {"prompt": "a fox", "aspect_ratio": "16:9"}
    assert seen[0][1].headers["authorization"] == "Bearer gsk_test"


def test_each_logical_call_gets_its_own_key() -> None:
    keys: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers.get("idempotency-key"))
        return ok(IMAGE_DATA)

    with client_with(handler) as client:
        client.images.generate("one")
        client.images.generate("two")
        client.images.generate("three", idempotency_key="order-42")
    assert keys[0] != keys[1]
    assert keys[2] == "order-42"


def test_connection_errors_are_retried_then_reported() -> None:
    calls: list[str | None] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers.get("idempotency-key"))
        if len(calls) < 3:
            raise httpx.ConnectError("connection refused", request=request)
        return ok(IMAGE_DATA)

    with client_with(flaky) as client:
        client.retry.backoff_base = 0.01
        assert client.images.generate("x").generation_id == IMAGE_DATA["generation_id"]
    assert len(calls) == 3 and len(set(calls)) == 1

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with client_with(down, max_retries=1) as client:
        client.retry.backoff_base = 0.01
        with pytest.raises(APIConnectionError) as caught:
            client.models.list()
    assert caught.value.code == "connection_error"
    assert "connection refused" in caught.value.message


def test_retry_budget_and_long_retry_after() -> None:
    calls = 0

    def limited(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return refused(429, "rate_limited", **{"Retry-After": "3600"})

    with client_with(limited) as client:
        with pytest.raises(RateLimitError) as caught:
            client.account.get()
    assert calls == 1, "an hour's Retry-After is raised at once, not slept through"
    assert caught.value.retry_after == 3600
    assert caught.value.status == 429

    calls = 0

    def always_busy(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return refused(503, "inference_unavailable", **{"Retry-After": "0"})

    with client_with(always_busy, max_retries=3) as client, pytest.raises(ServiceUnavailableError):
        client.images.generate("x")
    assert calls == 4

    calls = 0
    with client_with(always_busy, max_retries=0) as client, pytest.raises(ServiceUnavailableError):
        client.images.generate("x")
    assert calls == 1


def test_no_retry_for_client_errors() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return refused(402, "insufficient_points")

    with client_with(handler) as client, pytest.raises(InsufficientPointsError):
        client.images.generate("x")
    assert calls == 1


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (401, "invalid_api_key", AuthenticationError),
        (402, "insufficient_points", InsufficientPointsError),
        (422, "validation_error", ValidationError),
        (400, "invalid_request", ValidationError),
        (404, "not_found", NotFoundError),
        (409, "idempotency_conflict", ConflictError),
        (409, "generation_finished", ConflictError),
        (409, "generation_cancelled", GenerationCancelledError),
        (413, "payload_too_large", PayloadTooLargeError),
        (429, "rate_limited", RateLimitError),
        (500, "internal_error", ServerError),
        (502, "inference_error", ServerError),
        (503, "overloaded", ServiceUnavailableError),
        (503, "inference_unavailable", ServiceUnavailableError),
        (504, "generation_timeout", GenerationTimeoutError),
        (418, "brand_new_code", GenserveError),
    ],
)
def test_error_classes_by_code(status: int, code: str, cls: type[GenserveError]) -> None:
    with client_with(lambda r: refused(status, code), max_retries=0) as client:
        with pytest.raises(cls) as caught:
            client.generations.get("x")
    err = caught.value
    assert type(err) is cls
    assert (err.status, err.code, err.request_id) == (status, code, "req_err")
    assert err.message == f"a sentence about {code}"
    assert code in str(err) and "req_err" in str(err)
    if code == "validation_error":
        assert err.details == [{"field": "aspect_ratio", "message": "must be one of ..."}]
    if cls is GenerationTimeoutError:
        assert isinstance(err, TimeoutError)


def test_error_without_the_envelope() -> None:
    def proxy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    with client_with(proxy) as client, pytest.raises(ServerError) as caught:
        client.models.list()
    assert caught.value.code == "http_502"
    assert "Bad Gateway" in caught.value.message


def test_retry_after_parsing() -> None:
    assert parse_retry_after("7") == 7
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    err = error_from_envelope({"code": "generation_cancelled", "error": "cancelled"})
    assert isinstance(err, GenerationCancelledError) and err.status == 409


# ---------------------------------------------------------------- answers


def test_typed_answers_tolerate_extra_fields(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/files/"):
            assert "authorization" not in request.headers, "the key went to a file URL"
            return httpx.Response(200, content=b"RIFF")
        return ok(IMAGE_DATA, **{"Idempotent-Replayed": "true"})

    with client_with(handler) as client:
        result = client.images.generate("a fox")
        assert result.replayed is True
        image = result.images[0]
        assert (image.width, image.height, image.aspect_ratio) == (128, 72, "16:9")
        assert image.extra == {"brand_new_field": [1, 2]}
        assert result.extra == {"something_newer": {"x": 1}}
        assert (result.generation_time, result.remaining_points) == (2450, 92)
        saved = image.save(tmp_path)
        assert saved == tmp_path / "generated-image-1.webp"
        assert saved.read_bytes() == b"RIFF"
        named = image.save(tmp_path / "sub" / "fox.webp")
        assert named.read_bytes() == b"RIFF"
        assert [p.name for p in result.save(tmp_path / "all")] == ["generated-image-1.webp"]
    assert not list(tmp_path.glob("**/*.part"))


def test_result_kinds_from_shape() -> None:
    video = result_from_data(
        {"video": {"url": "u", "duration": 4, "generation_id": "g"}, "remaining_points": 1}
    )
    assert type(video).__name__ == "VideoResult"
    assert video.generation_id == "g"
    mesh = result_from_data({"model": {"url": "m", "preview_image": "p", "generation_id": "h"}})
    assert type(mesh).__name__ == "ModelResult" and mesh.generation_id == "h"
    assert genserve.ThreeDResult is genserve.ModelResult


def test_projects_pager_walks_every_page() -> None:
    pages_seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        pages_seen.append(params)
        page = int(params["page"])
        projects = [
            {"id": f"{page}-{i}", "type": "image", "prompt": "p", "brand_new": True}
            for i in range(2 if page < 3 else 1)
        ]
        return ok(
            {
                "projects": projects,
                "pagination": {
                    "page": page,
                    "limit": 2,
                    "total": 5,
                    "pages": 3,
                    "has_more": page < 3,
                },
            }
        )

    with client_with(handler) as client:
        ids = [p.id for p in client.projects.iter(type="images", limit=2)]
    assert ids == ["1-0", "1-1", "2-0", "2-1", "3-0"]
    assert [p["page"] for p in pages_seen] == ["1", "2", "3"]
    assert all(p["type"] == "images" and p["limit"] == "2" for p in pages_seen)


# ---------------------------------------------------------------- events


def sse(*events: tuple[str, str, dict[str, Any]], comment: bool = True) -> bytes:
    out = b": keep-alive\n\n" if comment else b""
    for ident, name, data in events:
        out += f"id: {ident}\nevent: {name}\ndata: {json.dumps(data)}\n\n".encode()
    return out


def test_sse_decoder() -> None:
    decoder = SseDecoder()
    lines = ["id: 1", "event: queued", 'data: {"position": 2}', "", ": keep-alive", ""]
    events = [e for e in (decoder.feed(line) for line in lines) if e is not None]
    assert [(e.id, e.name, e.data) for e in events] == [("1", "queued", {"position": 2})]
    assert decoder.last_id == "1"


def test_stream_yields_progress_then_result() -> None:
    body = sse(
        ("1", "queued", {"position": 1}),
        ("2", "progress", {"stage": "denoising", "step": 1, "total": 2, "elapsed": 0.1}),
        ("3", "progress", {"stage": "denoising", "step": 2, "total": 2, "elapsed": 0.2}),
        ("4", "completed", IMAGE_DATA),
    )

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept"] == "text/event-stream"
        assert request.headers.get("idempotency-key")
        return httpx.Response(200, content=body, headers={"Content-Type": "text/event-stream"})

    with client_with(handler) as client:
        stream = client.images.generate("x", stream=True)
        events = list(stream)
    assert [e.type for e in events] == ["queued", "progress", "progress", "completed"]
    assert events[0].position == 1
    assert events[2].fraction == 1.0 and events[1].stage == "denoising"
    assert isinstance(stream.result, ImageResult)
    assert events[-1].result is stream.result


def test_failed_event_raises_its_error() -> None:
    failure = {
        "success": False,
        "error": "The generation was cancelled.",
        "code": "generation_cancelled",
        "request_id": "req_f",
    }
    body = sse(("1", "queued", {"position": 1}), ("2", "failed", failure))

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"Content-Type": "text/event-stream"})

    with client_with(handler) as client:
        seen: list[Event] = []
        with pytest.raises(GenerationCancelledError) as caught:
            for event in client.images.generate("x", stream=True):
                seen.append(event)
    assert [e.type for e in seen] == ["queued"]
    assert caught.value.request_id == "req_f"
    assert caught.value.event is not None and caught.value.event.type == "failed"


def test_events_resume_with_last_event_id() -> None:
    asked: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("last-event-id"))
        if len(asked) == 1:
            # The connection breaks after two events.
            return httpx.Response(
                200,
                stream=_Broken(sse(("1", "queued", {"position": 1}), ("2", "progress", {}))),
                headers={"Content-Type": "text/event-stream"},
            )
        return httpx.Response(
            200,
            content=sse(("3", "progress", {}), ("4", "completed", IMAGE_DATA)),
            headers={"Content-Type": "text/event-stream"},
        )

    with client_with(handler) as client:
        client.retry.backoff_base = 0.01
        ids = [e.id for e in client.generations.events("g1")]
    assert ids == ["1", "2", "3", "4"]
    assert asked == [None, "2"]


class _Broken(httpx.SyncByteStream):
    def __init__(self, first: bytes) -> None:
        self.first = first

    def __iter__(self):  # type: ignore[no-untyped-def]
        yield self.first
        raise httpx.ReadError("connection reset")


def test_job_wait_and_timeout() -> None:
    accepted = {
        "generation_id": "g2",
        "status": "pending",
        "status_url": f"{BASE}/api/v1/generations/g2",
        "events_url": f"{BASE}/api/v1/generations/g2/events",
        "cancel_url": f"{BASE}/api/v1/generations/g2/cancel",
        "request_id": "req_a",
    }
    slow = {"on": False}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/api/v1/images":
            assert request.headers["prefer"] == "respond-async"
            return ok(accepted, status=202)
        if request.url.path.endswith("/events"):
            if slow["on"]:  # no event comes: the read times out after the time left
                time.sleep(request.extensions["timeout"]["read"])
                raise httpx.ReadTimeout("timed out", request=request)
            return httpx.Response(
                200,
                content=sse(("1", "completed", IMAGE_DATA)),
                headers={"Content-Type": "text/event-stream"},
            )
        if request.url.path.endswith("/cancel"):
            return ok({"generation_id": "g2", "status": "cancelled", "refunded_points": 4})
        raise AssertionError(request.url)

    with client_with(handler) as client:
        job = client.images.submit("later")
        assert job.generation_id == "g2"
        assert job.wait(timeout=5).images[0].aspect_ratio == "16:9"
        slow["on"] = True
        started = time.monotonic()
        with pytest.raises(GenerationTimeoutError) as caught:
            job.wait(timeout=0.3)
        assert caught.value.code == "wait_timeout"
        assert time.monotonic() - started < 5
        assert job.cancel().refunded_points == 4


# ---------------------------------------------------------------- asyncio


async def test_async_client_retries_with_the_same_key() -> None:
    keys: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers.get("idempotency-key"))
        if len(keys) == 1:
            return refused(503, "overloaded", **{"Retry-After": "0"})
        return ok(IMAGE_DATA)

    async with AsyncClient(
        api_key="k", base_url=BASE, transport=httpx.MockTransport(handler)
    ) as client:
        result = await client.images.generate("x")
    assert result.images[0].file_name == "generated-image-1.webp"
    assert len(keys) == 2 and keys[0] == keys[1]


async def test_async_stream_and_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/account":
            return refused(401, "invalid_api_key")
        return httpx.Response(
            200,
            content=sse(("1", "progress", {"stage": "denoising"}), ("2", "completed", IMAGE_DATA)),
            headers={"Content-Type": "text/event-stream"},
        )

    async with AsyncClient(
        api_key="k", base_url=BASE, transport=httpx.MockTransport(handler)
    ) as client:
        stream = await client.images.generate("x", stream=True)
        types = [e.type async for e in stream]
        assert types == ["progress", "completed"]
        assert stream.result is not None
        with pytest.raises(AuthenticationError):
            await client.account.get()
    await asyncio.sleep(0)


# ---------------------------------------------------------------- configuration


def test_settings_come_from_arguments_environment_then_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert resolve().base_url == "http://127.0.0.1:8000"
    assert resolve().api_key is None
    path = save_config("http://saved.test:9000/", "gsk_saved")
    assert path == tmp_path / "xdg" / "genserve" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resolve() == resolve(None, None)
    assert (resolve().base_url, resolve().api_key) == ("http://saved.test:9000", "gsk_saved")
    # The saved key is for the saved URL only.
    assert resolve(base_url="http://other.test").api_key is None
    monkeypatch.setenv("GENSERVE_API_KEY", "gsk_env")
    monkeypatch.setenv("GENSERVE_BASE_URL", "http://env.test")
    assert (resolve().base_url, resolve().api_key) == ("http://env.test", "gsk_env")
    assert resolve(api_key="gsk_arg", base_url="http://arg.test").api_key == "gsk_arg"
    client = Client()
    assert (client.base_url, client.api_key) == ("http://env.test", "gsk_env")
    client.close()


def test_three_d_needs_exactly_one_image(tmp_path: Path) -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return ok({"model": {"url": f"{BASE}/files/x/m.glb"}})

    png = tmp_path / "in.png"
    png.write_bytes(b"\x89PNG fake")
    with client_with(handler) as client:
        with pytest.raises(ValueError):
            client.three_d.generate()
        with pytest.raises(ValueError):
            client.three_d.generate(image_path=png, image_url="https://x.test/a.png")
        client.three_d.generate(png, texture_quality="no")
        client.three_d.generate("https://example.com/object.jpg")
        client.three_d.generate(image_bytes=b"abc")
    assert bodies[0] == {"image_base64": "iVBORyBmYWtl", "texture_quality": "no"}
    assert bodies[1] == {"image_url": "https://example.com/object.jpg"}
    assert bodies[2] == {"image_base64": "YWJj"}


def test_progress_displays() -> None:
    import io

    events = [
        Event(type="queued", data={"position": 2}),
        *[
            Event(type="progress", data={"stage": "denoising", "step": s, "total": 8})
            for s in range(1, 9)
        ],
        Event(type="progress", data={"stage": "encoding"}),
        Event(type="completed", data={}),
    ]
    out = io.StringIO()
    plain = make_display("image", out)
    assert isinstance(plain, PlainDisplay)  # not a terminal
    for event in events:
        plain.update(event)
    plain.close()
    assert out.getvalue().splitlines() == [
        "image: queued (position 2)",
        "image: denoising 1/8",
        "image: denoising 2/8",
        "image: denoising 4/8",
        "image: denoising 6/8",
        "image: denoising 8/8",
        "image: encoding",
        "image: done",
    ]
    drawn = io.StringIO()
    bar = make_display("image", drawn, use_rich=True)
    assert isinstance(bar, RichDisplay)
    for event in events:
        bar.update(event)
    bar.close()
    assert "image: done" in drawn.getvalue()


def test_every_server_code_is_known_to_the_sdk() -> None:
    """The bridge's table of codes (rest_bridge/edge/errors.py) and the SDK's agree on statuses,
    so an error read from an event stream (no HTTP status of its own) gets the right class."""
    from genserve.errors import CODE_STATUSES, class_for
    from rest_bridge.edge.errors import ERROR_CODES

    for entry in ERROR_CODES:
        assert CODE_STATUSES.get(entry.code) == entry.status, (
            f"add {entry.code!r} ({entry.status}) to clients/genserve/errors.py"
        )
        assert issubclass(class_for(entry.code, None), class_for(None, entry.status))
