"""``/openapi.json`` describes every JSON answer: a schema for each 200, the error envelope."""

from __future__ import annotations

from typing import Any

import pytest

from rest_bridge.app import create_app

JSON_ROUTES = [
    ("post", "/api/v1/images"),
    ("post", "/api/v1/videos"),
    ("post", "/api/v1/3d"),
    ("get", "/api/v1/projects"),
    ("get", "/api/v1/models"),
    ("get", "/api/v1/account"),
    ("get", "/api/v1/generations/{generation_id}"),
    ("post", "/api/v1/generations/{generation_id}/cancel"),
    ("get", "/healthz"),
]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return create_app().openapi()


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = schema["components"]["schemas"][name]
    return node


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
def test_every_200_has_the_success_envelope(schema: dict[str, Any], method: str, path: str) -> None:
    ok = schema["paths"][path][method]["responses"]["200"]
    body = _resolve(schema, ok["content"]["application/json"]["schema"])
    assert set(body["required"]) >= {"data"}
    data = _resolve(schema, body["properties"]["data"])
    assert data.get("properties"), f"{method} {path}: 200 data has no described fields"


@pytest.mark.parametrize("path", ["/api/v1/images", "/api/v1/videos", "/api/v1/3d"])
def test_generation_routes_describe_202_and_their_errors(schema: dict[str, Any], path: str) -> None:
    responses = schema["paths"][path]["post"]["responses"]
    assert {"202", "401", "402", "422", "429", "503"} <= set(responses)
    err = _resolve(schema, responses["402"]["content"]["application/json"]["schema"])
    assert set(err["required"]) >= {"error", "code", "request_id"}


def test_the_image_answer_names_the_document_fields(schema: dict[str, Any]) -> None:
    ok = schema["paths"]["/api/v1/images"]["post"]["responses"]["200"]
    body = _resolve(schema, ok["content"]["application/json"]["schema"])
    data = _resolve(schema, body["properties"]["data"])
    assert set(data["properties"]) >= {
        "images", "generation_id", "generation_time", "remaining_points", "request_id"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        (
            "ImageRequest",
            (
                "seed negative_prompt steps guidance_scale width height image_url image_base64 "
                "mask_url mask_base64 strength loras"
            ),
        ),
        ("VideoRequest", "seed negative_prompt image_url image_base64"),
        ("LoraChoice", "name scale"),
    ],
)
def test_every_creative_control_is_described_with_an_example(
    schema: dict[str, Any], name: str, fields: str
) -> None:
    properties = schema["components"]["schemas"][name]["properties"]
    for field in fields.split():
        assert properties[field].get("description"), (name, field)
        assert properties[field].get("examples"), (name, field)
