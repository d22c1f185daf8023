"""One account never reaches another's generations, projects or files.

The routes are read from the running bridge's OpenAPI document, so a route
added later with an identifier in its path is probed here without a change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx
import pytest
from sqlmodel import Session

from storage.models import Generation
from tests.conftest import Bridge

PROMPT = "a private lighthouse only its owner may see"


@dataclass
class Owned:
    owner_key: str
    intruder_key: str
    generation_id: str
    urls: list[str]


@pytest.fixture(scope="module")
def owned(bridge: Bridge) -> Owned:
    owner, intruder = bridge.new_key(points=100), bridge.new_key(points=100)
    with bridge.client(owner) as c:
        r = c.post(
            "/api/v1/images",
            json={"prompt": PROMPT, "num_images": 2},
            headers={"Idempotency-Key": "shared-retry-key"},
        )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    return Owned(owner, intruder, data["generation_id"], [i["url"] for i in data["images"]])


def _identifier_routes(bridge: Bridge) -> list[tuple[str, str]]:
    spec = httpx.get(bridge.base + "/openapi.json").json()
    return [
        (method.upper(), path)
        for path, methods in spec["paths"].items()
        if path.startswith("/api/") and "{" in path
        for method in methods
    ]


def test_every_route_with_an_identifier_is_404_to_another_account(
    bridge: Bridge, owned: Owned
) -> None:
    routes = _identifier_routes(bridge)
    assert ("GET", "/api/v1/generations/{generation_id}") in routes
    with bridge.client(owned.owner_key) as c:
        assert c.get(f"/api/v1/generations/{owned.generation_id}").status_code == 200
    with bridge.client(owned.intruder_key) as c:
        for method, path in routes:
            url = re.sub(r"\{[^}]+\}", owned.generation_id, path)
            r = c.request(method, url)
            assert r.status_code == 404, (method, path, r.text)
            assert r.json()["code"] == "not_found"
            assert PROMPT not in r.text
    with Session(bridge.engine) as s:
        gen = s.get(Generation, owned.generation_id)
        assert gen is not None and gen.status == "completed"  # the intruder's cancel did nothing


def test_projects_list_only_the_callers_own(bridge: Bridge, owned: Owned) -> None:
    with bridge.client(owned.owner_key) as c:
        mine = c.get("/api/v1/projects").json()["data"]
    with bridge.client(owned.intruder_key) as c:
        for kind in ("all", "images"):
            theirs = c.get("/api/v1/projects", params={"type": kind}).json()["data"]
            assert theirs["projects"] == [] and theirs["pagination"]["total"] == 0
    assert [p["id"] for p in mine["projects"]] == [owned.generation_id]


def test_an_idempotency_key_is_the_callers_own(bridge: Bridge, owned: Owned) -> None:
    with bridge.client(owned.intruder_key) as c:
        r = c.post(
            "/api/v1/images",
            json={"prompt": PROMPT, "num_images": 2},
            headers={"Idempotency-Key": "shared-retry-key"},
        )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["generation_id"] != owned.generation_id
    assert not set(i["url"] for i in r.json()["data"]["images"]) & set(owned.urls)


def test_output_urls_carry_128_random_bits_and_cannot_be_enumerated(
    bridge: Bridge, owned: Owned
) -> None:
    tokens = []
    for url in owned.urls:
        found = re.fullmatch(re.escape(bridge.base) + r"/files/([0-9a-f]{32})/([^/]+)", url)
        assert found is not None, url
        token, name = found.groups()
        tokens.append(token)
        assert httpx.get(url).status_code == 200  # a capability: no key needed
        for neighbour in (f"{int(token, 16) + 1:032x}", f"{int(token, 16) - 1:032x}", "0" * 32):
            r = httpx.get(f"{bridge.base}/files/{neighbour}/{name}")
            assert r.status_code == 404
    assert len(set(tokens)) == len(tokens)
    other = tokens[1]
    name_of_first = owned.urls[0].rsplit("/", 1)[1]
    assert httpx.get(f"{bridge.base}/files/{other}/{name_of_first}").status_code == 404
