"""Adapters (LoRA) per request: nano-banana's built-in ``demo-style`` (REST, SDK, CLI)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from genserve import Client, ValidationError
from inference_server.pipelines.image import ImageRun, batch_key
from tests.clients.test_cli import genserve, no_traceback
from tests.conftest import Bridge, InferenceProc

SQLITE = pytest.mark.parametrize("bridge", ["sqlite"], indirect=True)


def _post(bridge: Bridge, key: str, **fields: Any) -> httpx.Response:
    body = {"prompt": "a lighthouse", "seed": 31, "width": 128, "height": 96, **fields}
    with bridge.client(key) as c:
        return c.post("/api/v1/images", json=body)


def _pixels(response: httpx.Response) -> bytes:
    assert response.status_code == 200, response.text
    url = response.json()["data"]["images"][0]["url"]
    with Image.open(io.BytesIO(httpx.get(url).content)) as image:
        return image.convert("RGB").tobytes()


@SQLITE
def test_demo_style_changes_the_output_for_a_fixed_seed(bridge: Bridge) -> None:
    key = bridge.new_key(points=200)
    plain = _pixels(_post(bridge, key))
    styled = _post(bridge, key, loras=[{"name": "demo-style"}])
    assert _pixels(styled) != plain
    assert _pixels(_post(bridge, key, loras=[{"name": "demo-style", "scale": 1.0}])) == _pixels(
        styled
    )
    half = _pixels(_post(bridge, key, loras=[{"name": "demo-style", "scale": 0.5}]))
    assert half not in (plain, _pixels(styled))
    assert _pixels(_post(bridge, key)) == plain  # switched off again for a call without

    with bridge.client(key) as c:
        models = {m["name"]: m for m in c.get("/api/v1/models").json()["data"]["models"]}
        projects = c.get("/api/v1/projects", params={"type": "images"}).json()["data"]
    assert models["nano-banana"]["loras"] == [{"name": "demo-style", "default_scale": 1.0}]
    meta = {p["id"]: p["metadata"] for p in projects["projects"]}
    recorded = meta[styled.json()["data"]["generation_id"]]["loras"]
    assert recorded == [{"name": "demo-style", "scale": 1.0}]  # the default scale, written


@SQLITE
@pytest.mark.parametrize(
    "loras",
    [
        [{"name": "no-such-style"}],
        [{"name": "demo-style"}, {"name": "demo-style"}],
        [{"name": "demo-style"}] * 4,
        [{"name": "demo-style", "scale": 9}],
        [{"name": "demo-style", "weight": 1}],
        "demo-style",
    ],
)
def test_bad_loras_are_422_before_the_debit(
    bridge: Bridge, inference: InferenceProc, loras: Any
) -> None:
    key = bridge.new_key(points=100)
    rpcs = inference.rpc_count()
    r = _post(bridge, key, loras=loras)
    assert r.status_code == 422, r.text
    assert any(d["field"].startswith("loras") for d in r.json()["details"]), r.json()
    with bridge.client(key) as c:
        assert c.get("/api/v1/account").json()["data"]["points"] == 100
    assert inference.rpc_count() == rpcs


def test_batching_merges_only_the_same_adapters_and_scales() -> None:
    def run(loras: tuple[tuple[str, float], ...]) -> ImageRun:
        return ImageRun(
            prompt="x",
            negative_prompt="",
            num_images=1,
            width=64,
            height=64,
            steps=2,
            guidance=5.0,
            seed=1,
            loras=loras,
        )

    plain, styled = run(()), run((("demo-style", 1.0),))
    half = run((("demo-style", 0.5),))
    keys = {batch_key("m", r) for r in (plain, styled, half)}
    assert len(keys) == 3
    assert batch_key("m", styled) == batch_key("m", run((("demo-style", 1.0),)))


@SQLITE
def test_sdk_and_cli_apply_adapters(bridge: Bridge, tmp_path: Path) -> None:
    key = bridge.new_key(points=100)
    size = {"seed": 31, "width": 128, "height": 96}
    with Client(api_key=key, base_url=bridge.base) as client:
        plain = client.images.generate("a lighthouse", **size)
        styled = client.images.generate("a lighthouse", loras=["demo-style"], **size)
        half = client.images.generate(
            "a lighthouse", loras=[{"name": "demo-style", "scale": 0.5}], **size
        )
        with pytest.raises(ValidationError) as unknown:
            client.images.generate("a lighthouse", loras=["no-such-style"])
        assert [d["field"] for d in unknown.value.details] == ["loras"]
        assert client.account.get().points == 100 - 3 * 4
    saved = [r.save(tmp_path / r.generation_id)[0] for r in (plain, styled, half)]
    pixels = [Image.open(p).convert("RGB").tobytes() for p in saved]
    assert len(set(pixels)) == 3

    env = {"GENSERVE_BASE_URL": bridge.base, "GENSERVE_API_KEY": key}
    args = ["image", "a lighthouse", "--seed", "31", "--size", "128x96"]
    done = genserve(tmp_path, *args, "--lora", "demo-style:0.5", "-o", str(tmp_path / "c"), **env)
    assert done.returncode == 0, done.stderr
    assert Image.open(done.stdout.strip()).convert("RGB").tobytes() == pixels[2]
    refused = genserve(tmp_path, *args, "--lora", "no-such-style", **env)
    assert refused.returncode != 0 and "no-such-style" in refused.stderr
    no_traceback(refused)
    bad = genserve(tmp_path, *args, "--lora", "demo-style:much", **env)
    assert bad.returncode == 2 and "not a number" in bad.stderr
