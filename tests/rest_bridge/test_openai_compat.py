"""The OpenAI-compatible routes, driven by the ``openai`` package against a real bridge."""

from __future__ import annotations

import base64
import io
import json

import httpx
import openai
import pytest
from openai import OpenAI
from PIL import Image

from tests.conftest import Bridge


def _client(bridge: Bridge, key: str, **kw: object) -> OpenAI:
    return OpenAI(base_url=bridge.base + "/v1", api_key=key, **kw)  # type: ignore[arg-type]


def _points(bridge: Bridge, key: str) -> int:
    with bridge.client(key) as http:
        points: int = http.get("/api/v1/account").json()["data"]["points"]
    return points


def test_images_as_urls_debit_points_and_count_against_the_key(bridge: Bridge) -> None:
    key = bridge.new_key(points=100)
    client = _client(bridge, key)
    raw = client.images.with_raw_response.generate(
        prompt="A lighthouse on a cliff", n=2, size="1792x1024", model="dall-e-3"
    )
    assert raw.headers["x-ratelimit-limit"] == "100"
    assert raw.headers["x-ratelimit-remaining"] == "99"
    assert raw.headers["x-request-id"].startswith("req_")
    answer = raw.parse()
    assert isinstance(answer.created, int)
    assert answer.data is not None and len(answer.data) == 2
    for image in answer.data:
        assert image.url is not None and image.b64_json is None
        png = httpx.get(image.url, timeout=30)  # a capability URL: no key needed
        assert png.status_code == 200
        assert png.headers["content-type"] == "image/png"
        width, height = Image.open(io.BytesIO(png.content)).size
        assert abs(width / height - 16 / 9) < 0.05, (width, height)
    assert _points(bridge, key) == 100 - 2 * 4  # the native price: 4 points an image

    with bridge.client(key) as http:  # the same generation, as a project of the account
        projects = http.get("/api/v1/projects", params={"type": "images"}).json()["data"]
    assert projects["pagination"]["total"] == 1
    assert projects["projects"][0]["prompt"] == "A lighthouse on a cliff"


def test_images_as_base64_in_the_format_asked(bridge: Bridge) -> None:
    key = bridge.new_key(points=100)
    answer = _client(bridge, key).images.generate(
        prompt="A red bicycle",
        response_format="b64_json",
        size="1024x1792",
        output_format="webp",
        quality="hd",
        style="vivid",
        user="someone",
        model="nano-banana",
    )
    assert answer.data is not None and len(answer.data) == 1
    b64 = answer.data[0].b64_json
    assert b64 is not None and answer.data[0].url is None
    data = base64.b64decode(b64)
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    width, height = Image.open(io.BytesIO(data)).size
    assert abs(width / height - 9 / 16) < 0.05, (width, height)
    assert _points(bridge, key) == 96


def test_models_list_and_retrieve(bridge: Bridge) -> None:
    client = _client(bridge, bridge.new_key())
    models = {m.id: m for m in client.models.list()}
    assert {"nano-banana", "vidu-q2", "ltx-2"} <= set(models)
    banana = models["nano-banana"]
    assert banana.object == "model" and banana.owned_by == "genserve"
    assert isinstance(banana.created, int)
    assert client.models.retrieve("ltx-2").id == "ltx-2"
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("dall-e-9")
    assert missing.value.code == "model_not_found"


def test_a_bad_key_is_an_authentication_error(bridge: Bridge) -> None:
    client = _client(bridge, "gsk_" + "x" * 38, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        client.images.generate(prompt="anything")
    assert refused.value.status_code == 401
    assert refused.value.code == "invalid_api_key"
    body = refused.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_no_points_is_a_402_that_is_not_retried(bridge: Bridge) -> None:
    key = bridge.new_key(points=0)
    client = _client(bridge, key)  # default retries: a 402 must not be retried
    with pytest.raises(openai.APIStatusError) as refused:
        client.images.generate(prompt="A castle", n=1)
    err = refused.value
    assert err.status_code == 402
    assert err.code == "insufficient_points"
    assert err.type == "insufficient_quota"
    with bridge.client(key) as http:
        account = http.get("/api/v1/account")
    assert account.headers["x-ratelimit-remaining"] == "98"  # one try, then this request
    assert _points(bridge, key) == 0


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"size": "999x999"}, "size"),
        ({"n": 5}, "n"),
        ({"n": 0}, "n"),
        ({"model": "no-such-model"}, "model"),
        ({"model": "vidu-q2"}, "model"),  # a video model is no image model
        ({"prompt": "   "}, "prompt"),
        ({"response_format": "gif"}, "response_format"),
        ({"extra_body": {"colour": "blue"}}, "colour"),
    ],
)
def test_invalid_requests_are_400s_naming_the_parameter(
    bridge: Bridge, params: dict[str, object], param: str
) -> None:
    key = bridge.new_key(points=100)
    client = _client(bridge, key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        client.images.generate(**{"prompt": "A cat", **params})  # type: ignore[call-overload]
    assert refused.value.status_code == 400
    assert refused.value.param == param, refused.value.body
    assert refused.value.type == "invalid_request_error"
    assert _points(bridge, key) == 100


def test_errors_elsewhere_keep_the_native_envelope(bridge: Bridge) -> None:
    key = bridge.new_key()
    with bridge.client(key) as http:
        openai_404 = http.get("/v1/no-such-route")
        native_404 = http.get("/api/v1/no-such-route")
        bad_json = http.post(
            "/v1/images/generations",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
    assert openai_404.status_code == 404
    assert openai_404.json()["error"]["code"] == "not_found"
    assert openai_404.headers["x-ratelimit-remaining"] == "99"  # counted, as native routes are
    assert native_404.status_code == 404 and native_404.json()["success"] is False
    assert bad_json.status_code == 400 and bad_json.json()["error"]["type"] == (
        "invalid_request_error"
    )


def test_the_hourly_limit_is_a_rate_limit_error(bridge: Bridge) -> None:
    key = bridge.new_key()
    with bridge.client(key) as http:
        for _ in range(100):
            assert http.get("/v1/models").status_code == 200
    client = _client(bridge, key, max_retries=0)
    with pytest.raises(openai.RateLimitError) as limited:
        client.models.list()
    assert limited.value.code == "rate_limited"
    assert int(limited.value.response.headers["retry-after"]) > 0


IGNORED_FIELDS_HOSTILE: list[tuple[dict[str, object], str]] = [
    *[
        ({name: value}, name)
        for name in ("quality", "style", "user", "background", "moderation")
        for value in ("a\x00b", "\ud800", "x" * 10_000, 5, True, ["auto"])
    ],
    ({"quality": "ultra"}, "quality"),
    ({"style": "gothic"}, "style"),
    ({"background": "plaid"}, "background"),
    ({"moderation": "none"}, "moderation"),
    ({"safety_identifier": "s" * 10_000}, "safety_identifier"),
    ({"output_compression": 2**1000}, "output_compression"),
    ({"output_compression": True}, "output_compression"),
    ({"output_compression": 101}, "output_compression"),
    ({"output_compression": "50"}, "output_compression"),
    ({"n": "4"}, "n"),
    ({"n": True}, "n"),
    ({"n": 1.5}, "n"),
    ({"stream": "false"}, "stream"),
    ({"size": 1024}, "size"),
    ({"model": "m\x00"}, "model"),
    ({"prompt": "a\x00b"}, "prompt"),
    ({"prompt": "\udfff"}, "prompt"),
    ({"prompt": "x" * 4001}, "prompt"),
]


@pytest.mark.parametrize(("extra", "param"), IGNORED_FIELDS_HOSTILE)
def test_every_field_is_checked_before_any_debit(
    bridge: Bridge, extra: dict[str, object], param: str
) -> None:
    """Raw JSON (the SDK would refuse some of these itself): OpenAI's 400, nothing charged."""
    key = bridge.new_key(points=100)
    body = {"prompt": "A cat", **extra}
    with bridge.client(key) as http:
        r = http.post(
            "/v1/images/generations",
            content=json.dumps(body),  # lone surrogates as JSON escapes
            headers={"Content-Type": "application/json"},
        )
    assert r.status_code == 400, (extra, r.status_code, r.text[:300])
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    assert _points(bridge, key) == 100


def test_openai_s_documented_values_pass(bridge: Bridge) -> None:
    key = bridge.new_key(points=100)
    with bridge.client(key) as http:
        r = http.post(
            "/v1/images/generations",
            json={
                "prompt": "A cat",
                "quality": "hd",
                "style": "natural",
                "user": "user-1234",
                "background": "auto",
                "moderation": "low",
                "output_compression": 80,
                "n": 1,
                "stream": False,
            },
        )
    assert r.status_code == 200, r.text


def test_the_openapi_document_states_the_prompt_bounds(bridge: Bridge) -> None:
    schema = httpx.get(bridge.base + "/openapi.json").json()
    prompt = schema["components"]["schemas"]["OpenAIImageRequest"]["properties"]["prompt"]
    assert (prompt["minLength"], prompt["maxLength"]) == (1, 4000)
