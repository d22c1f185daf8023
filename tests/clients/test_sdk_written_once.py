"""The SDK written once: each kind's parameters from one declaration, both clients alike."""

from __future__ import annotations

import asyncio
import inspect
import json
import pydoc
from typing import Any

import httpx
import pytest

import genserve
from genserve import AsyncClient, Client, ImageParams, ThreeDParams, VideoParams
from genserve.params import KIND_SPECS, request_body
from genserve.vocabulary import KINDS

BASE = "http://genserve.test"
RESOURCES = ("images", "videos", "three_d", "projects", "models", "account", "generations")


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_help_lists_the_resources(cls: type[Any]) -> None:
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    for name in RESOURCES:
        assert f"``{name}``" in text, name


def test_every_kind_is_declared_once() -> None:
    assert set(KIND_SPECS) == set(KINDS)
    assert {k: s.path for k, s in KIND_SPECS.items()} == {
        "image": "/api/v1/images",
        "video": "/api/v1/videos",
        "3d": "/api/v1/3d",
    }
    assert {k: s.params for k, s in KIND_SPECS.items()} == {
        "image": ImageParams,
        "video": VideoParams,
        "3d": ThreeDParams,
    }
    client = Client(api_key="k", base_url=BASE)
    for resource in (client.images, client.videos, client.three_d):
        assert resource.spec is KIND_SPECS[resource.kind]
        assert resource.spec.result.kind == resource.kind


def test_bodies_follow_the_declaration() -> None:
    image = KIND_SPECS["image"]
    body = request_body(image, "a fox", {"num_images": 2, "model": None}, {"seed": 7})
    assert body == {"prompt": "a fox", "num_images": 2, "seed": 7}
    with pytest.raises(TypeError, match="unexpected keyword argument 'duration'"):
        request_body(image, "a fox", {"duration": 4})
    video = request_body(KIND_SPECS["video"], "waves", {"duration": 2, "resolution": "360p"})
    assert video == {"prompt": "waves", "duration": 2, "resolution": "360p"}


def test_both_clients_send_the_same_bodies() -> None:
    bodies: list[tuple[str, dict[str, Any]]] = []
    answers = {
        "/api/v1/images": {"images": []},
        "/api/v1/videos": {"video": {"url": f"{BASE}/files/x/v.mp4"}},
        "/api/v1/3d": {"model": {"url": f"{BASE}/files/x/m.glb"}},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append((request.url.path, json.loads(request.content)))
        data = answers[request.url.path]
        return httpx.Response(200, json={"success": True, "data": data})

    with Client(api_key="k", base_url=BASE, transport=httpx.MockTransport(handler)) as client:
        client.images.generate("a fox", aspect_ratio="16:9", num_images=2)
        client.videos.generate("waves", duration=2)
        client.three_d.generate(image_url="https://x.test/a.png", orientation="default")
        with pytest.raises(TypeError):
            client.images.generate("a fox", duration=2)  # type: ignore[call-overload]
    sync = list(bodies)
    bodies.clear()

    async def run() -> None:
        transport = httpx.MockTransport(handler)
        async with AsyncClient(api_key="k", base_url=BASE, transport=transport) as client:
            await client.images.generate("a fox", aspect_ratio="16:9", num_images=2)
            await client.videos.generate("waves", duration=2)
            await client.three_d.generate(image_url="https://x.test/a.png", orientation="default")

    asyncio.run(run())
    assert bodies == sync
    assert sync[0] == (
        "/api/v1/images",
        {"prompt": "a fox", "aspect_ratio": "16:9", "num_images": 2},
    )


def test_the_clients_have_the_same_surface() -> None:
    """Every public method of the asyncio client has its synchronous twin, same parameters."""
    renames = {"aclose": "close", "__aenter__": "__enter__", "__aexit__": "__exit__"}
    pairs = [
        (genserve.async_client.AsyncClient, genserve.client.Client),
        (genserve.async_client.AsyncJob, genserve.client.Job),
        (genserve.async_client.AsyncGenerationStream, genserve.client.GenerationStream),
        (genserve.async_client.Images, genserve.client.Images),
        (genserve.async_client.ThreeD, genserve.client.ThreeD),
        (genserve.async_client.Projects, genserve.client.Projects),
        (genserve.async_client.Generations, genserve.client.Generations),
    ]
    for async_cls, sync_cls in pairs:
        for name, member in vars(async_cls).items():
            if not callable(member) or (name.startswith("_") and name not in renames):
                continue
            twin = getattr(sync_cls, renames.get(name, name))
            assert list(inspect.signature(member).parameters) == list(
                inspect.signature(twin).parameters
            ), name
