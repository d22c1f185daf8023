"""One table of error codes (``rest_bridge/edge/errors.py``): code, OpenAPI and README agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rest_bridge.app import create_app
from rest_bridge.edge.envelope import HTTP_CODES
from rest_bridge.edge.errors import ERROR_CODES
from tools.error_table import error_table

ROOT = Path(__file__).resolve().parents[2]
RAISED = re.compile(r'ApiError\(\s*(?:status=)?(\d{3}),\s*(?:code=)?"(\w+)"')


def raised_in_source() -> set[tuple[int, str]]:
    found = set()
    for path in (ROOT / "rest_bridge").rglob("*.py"):
        for status, code in RAISED.findall(path.read_text()):
            found.add((int(status), code))
    return found


def test_codes_are_unique() -> None:
    codes = [e.code for e in ERROR_CODES]
    assert len(codes) == len(set(codes))


def test_every_code_the_bridge_raises_is_in_the_table_with_its_status() -> None:
    raised = raised_in_source() | {(s, c) for s, c in HTTP_CODES.items()}
    assert (502, "inference_error") in raised  # the scan does find codes
    status_of = {e.code: e.status for e in ERROR_CODES}
    missing = {(s, c) for s, c in raised if status_of.get(c) != s}
    assert not missing, f"add these to rest_bridge/edge/errors.py ERROR_CODES: {sorted(missing)}"


def test_the_error_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text()
    found = re.search(
        r"<!-- error-codes: generated from rest_bridge/edge/errors.py -->\n(.*?)\n"
        r"<!-- /error-codes -->",
        readme,
        re.S,
    )
    assert found is not None, "README.md lost its error-codes markers"
    assert found.group(1) == error_table(), (
        "README.md's error table differs from rest_bridge/edge/errors.py; paste error_table()"
    )


@pytest.fixture(scope="module")
def schema() -> dict:
    return create_app().openapi()


def test_openapi_error_responses_name_the_tables_codes(schema: dict) -> None:
    """The contract's routes (``/v1/``, the OpenAI-compatible ones, keep OpenAI's shapes)."""
    for path, operations in schema["paths"].items():
        if path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if not status.startswith(("4", "5")):
                    continue
                codes = [e.code for e in ERROR_CODES if e.status == int(status)]
                assert codes, f"{method} {path} answers {status}, which has no code"
                described = response["description"]
                assert all(f"`{c}`" in described for c in codes), f"{method} {path} {status}"
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorEnvelope"), f"{method} {path} {status}: {ref}"


def test_generation_routes_list_the_inference_error(schema: dict) -> None:
    for path in ("/api/v1/images", "/api/v1/videos", "/api/v1/3d"):
        assert (
            "`inference_error`" in schema["paths"][path]["post"]["responses"]["502"]["description"]
        )
