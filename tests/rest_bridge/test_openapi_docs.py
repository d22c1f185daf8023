"""``/openapi.json`` beyond the schemas: the bearer scheme, the answer modes, the document's
examples (checked against the published document itself)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from genserve.vocabulary import Kind
from rest_bridge.app import create_app
from rest_bridge.edge import doc_examples
from tests.utils.procs import ROOT

DOCUMENT = Path(
    os.environ.get(
        "GENSERVE_API_DOCS",
        # The published document beside the checkout, else the copy kept with the tests.
        next(
            (p for p in (ROOT.parent / "shared" / "seed" / "api-docs.txt",) if p.exists()),
            ROOT / "tests" / "examples" / "api-docs.txt",
        ),
    )
)


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return create_app().openapi()


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op) for path, ops in schema["paths"].items() for method, op in ops.items()
    ]


def test_keyed_routes_carry_the_bearer_scheme(schema: dict[str, Any]) -> None:
    scheme = schema["components"]["securitySchemes"]["bearerAuth"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    for method, path, op in _operations(schema):
        keyed = path.startswith(("/api/", "/v1/"))
        assert (op.get("security") == [{"bearerAuth": []}]) == keyed, (method, path)
    assert not any(path.startswith(("/docs", "/redoc", "/static")) for path in schema["paths"])


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/api/v1/images", "image"), ("/api/v1/videos", "video"), ("/api/v1/3d", "3d")],
)
def test_generation_routes_describe_their_modes(
    schema: dict[str, Any], path: str, kind: Kind
) -> None:
    op = schema["paths"][path]["post"]
    headers = {p["name"]: p for p in op["parameters"] if p["in"] == "header"}
    assert set(headers) >= {"Prefer", "Accept", "Idempotency-Key"}
    # Any value is allowed (an unknown preference or type is ignored, so schemathesis's
    # negative cases must not expect a refusal); the meaningful ones are the examples.
    assert headers["Prefer"]["schema"]["examples"] == ["respond-async"]
    assert "text/event-stream" in headers["Accept"]["schema"]["examples"]
    assert "text/event-stream" in op["responses"]["200"]["content"]
    assert "202" in op["responses"]
    request, response = doc_examples.GENERATION_EXAMPLES[kind]
    assert op["requestBody"]["content"]["application/json"]["example"] == request
    assert op["responses"]["200"]["content"]["application/json"]["example"] == response


def test_projects_carry_the_document_example(schema: dict[str, Any]) -> None:
    op = schema["paths"]["/api/v1/projects"]["get"]
    examples = {p["name"]: p.get("example") for p in op["parameters"]}
    assert examples["type"] == "images" and examples["limit"] == 10
    ok = op["responses"]["200"]["content"]["application/json"]
    assert ok["example"] == doc_examples.PROJECTS_RESPONSE


def _document_examples(text: str, label: str) -> list[Any]:
    """Every JSON object that follows ``label`` in the document, in order."""
    decoder = json.JSONDecoder()
    found = []
    for match in re.finditer(re.escape(label), text):
        start = text.find("{", match.end())
        between = text[match.end() : start]
        if start < 0 or between.strip():
            continue  # the projects request is a URL, not JSON
        value, _ = decoder.raw_decode(text, start)
        found.append(value)
    return found


def test_the_examples_are_the_documents() -> None:
    if not DOCUMENT.exists():
        pytest.skip(f"the published document is not at {DOCUMENT} (set GENSERVE_API_DOCS)")
    text = DOCUMENT.read_text()
    requests = _document_examples(text, "Request Example")
    responses = _document_examples(text, "Response Example")
    assert requests == [
        doc_examples.IMAGE_REQUEST,
        doc_examples.VIDEO_REQUEST,
        doc_examples.THREE_D_REQUEST,
    ]
    assert responses == [
        doc_examples.IMAGE_RESPONSE,
        doc_examples.VIDEO_RESPONSE,
        doc_examples.THREE_D_RESPONSE,
        doc_examples.PROJECTS_RESPONSE,
    ]
    url = re.search(r"GET (/api/v1/projects\?\S+?)Response Example", text)
    assert url is not None
    query = dict(parse_qsl(urlsplit(url.group(1)).query))
    assert query == {k: str(v) for k, v in doc_examples.PROJECTS_QUERY.items()}
