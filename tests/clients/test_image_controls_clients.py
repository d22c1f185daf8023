"""Image controls through the SDK (both clients) and the ``genserve image`` command."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from PIL import Image

from genserve import AsyncClient, Client, ValidationError
from tests.clients.test_cli import genserve, no_traceback
from tests.conftest import Bridge

SQLITE = pytest.mark.parametrize("bridge", ["sqlite"], indirect=True)


def _pixels(path: Path) -> bytes:
    with Image.open(path) as image:
        return image.convert("RGB").tobytes()


@SQLITE
def test_sdk_takes_every_control(bridge: Bridge, tmp_path: Path) -> None:
    key = bridge.new_key(points=200)
    controls = {
        "seed": 4242,
        "negative_prompt": "fog",
        "steps": 5,
        "guidance_scale": 6.0,
        "width": 160,
        "height": 96,
    }
    with Client(api_key=key, base_url=bridge.base) as client:
        first = client.images.generate("a harbour at night", **controls)
        assert first.seed == 4242 and first.images[0].seed == 4242
        assert (first.images[0].width, first.images[0].height) == (160, 96)
        assert first.remaining_points == 200 - 5  # 5 of 4 default steps: 5 points
        (path,) = first.save(tmp_path / "a")

        project = next(iter(client.projects.list(type="images")))
        assert {k: project.metadata[k] for k in controls} == controls

        with pytest.raises(ValidationError) as too_many:
            client.images.generate("x", steps=51)
        assert [d["field"] for d in too_many.value.details] == ["steps"]
        assert client.account.get().points == 195

        unseeded = client.images.generate("a harbour at night")
        assert unseeded.seed is not None and unseeded.images[0].seed == unseeded.seed

    async def again() -> Path:
        async with AsyncClient(api_key=key, base_url=bridge.base) as client:
            result = await client.images.generate("a harbour at night", **controls)
            assert result.seed == 4242
            (saved,) = await result.asave(tmp_path / "b")
            return saved

    assert _pixels(asyncio.run(again())) == _pixels(path)


@SQLITE
def test_cli_takes_every_control(bridge: Bridge, tmp_path: Path) -> None:
    env = {"GENSERVE_BASE_URL": bridge.base, "GENSERVE_API_KEY": bridge.new_key(points=100)}
    args = ["--seed", "77", "--negative", "fog", "--steps", "5", "--guidance", "6.5"]
    made = []
    for folder in ("one", "two"):
        done = genserve(
            tmp_path,
            "image",
            "a lantern",
            *args,
            "--size",
            "192x128",
            "-o",
            str(tmp_path / folder),
            **env,
        )
        assert done.returncode == 0, done.stderr
        assert "seed 77" in done.stderr
        (line,) = done.stdout.splitlines()
        made.append(Path(line))
    with Image.open(made[0]) as image:
        assert image.size == (192, 128)
    assert _pixels(made[0]) == _pixels(made[1])

    other = genserve(tmp_path, "image", "a lantern", *args, "-o", str(tmp_path / "three"), **env)
    assert other.returncode == 0, other.stderr
    with Image.open(other.stdout.strip()) as image:
        assert image.size == (128, 128)

    bad = genserve(tmp_path, "image", "a lantern", "--size", "big", **env)
    assert bad.returncode == 2 and "WIDTHxHEIGHT" in bad.stderr
    no_traceback(bad)
    refused = genserve(tmp_path, "image", "a lantern", "--steps", "51", **env)
    assert refused.returncode != 0 and "max_steps" in refused.stderr
    no_traceback(refused)


@SQLITE
def test_openai_size_gives_that_exact_size_when_the_model_allows_it(bridge: Bridge) -> None:
    import base64
    import io

    from openai import OpenAI

    key = bridge.new_key(points=100)
    client = OpenAI(base_url=bridge.base + "/v1", api_key=key)
    for size, expected, cost in (
        ("192x128", (192, 128), 6),  # 1.5 times the native pixels: 6 points
        ("256x256", (256, 256), 16),  # within nano-banana's max_pixels
        ("1792x1024", None, 4),  # beyond them: OpenAI's size as an aspect ratio, as before
    ):
        before = Client(api_key=key, base_url=bridge.base).account.get().points
        answer = client.images.generate(prompt="a kite", size=size, response_format="b64_json")  # type: ignore[arg-type]
        assert answer.data is not None and answer.data[0].b64_json is not None
        with Image.open(io.BytesIO(base64.b64decode(answer.data[0].b64_json))) as image:
            if expected is not None:
                assert image.size == expected
            else:
                assert abs(image.width / image.height - 16 / 9) < 0.05
        after = Client(api_key=key, base_url=bridge.base).account.get().points
        assert before - after == cost


@SQLITE
def test_openai_edit_and_variation_return_images(bridge: Bridge, tmp_path: Path) -> None:
    import base64
    import io

    from openai import OpenAI
    from PIL import ImageDraw

    picture = tmp_path / "picture.png"
    image = Image.new("RGB", (200, 150), (30, 80, 200))
    ImageDraw.Draw(image).ellipse((50, 30, 150, 120), fill=(240, 200, 40))
    image.save(picture)
    mask = tmp_path / "mask.png"
    drawn = Image.new("L", (200, 150), 0)
    ImageDraw.Draw(drawn).rectangle((0, 0, 100, 150), fill=255)
    drawn.save(mask)

    key = bridge.new_key(points=100)
    client = OpenAI(base_url=bridge.base + "/v1", api_key=key)
    with picture.open("rb") as img, mask.open("rb") as msk:
        edited = client.images.edit(
            image=img,
            mask=msk,
            prompt="a sunflower",
            size="160x120",  # type: ignore[arg-type]
            response_format="b64_json",
        )
    assert edited.data is not None and edited.data[0].b64_json is not None
    with Image.open(io.BytesIO(base64.b64decode(edited.data[0].b64_json))) as out:
        assert out.size == (160, 120)
    with picture.open("rb") as img:
        varied = client.images.create_variation(image=img, n=2)
    assert varied.data is not None and len(varied.data) == 2 and varied.data[0].url


def _drawn(tmp_path: Path) -> tuple[Path, Path]:
    from PIL import ImageDraw

    picture = tmp_path / "picture.png"
    image = Image.new("RGB", (200, 150), (30, 80, 200))
    ImageDraw.Draw(image).ellipse((50, 30, 150, 120), fill=(240, 200, 40))
    image.save(picture)
    mask = tmp_path / "mask.png"
    drawn = Image.new("L", (200, 150), 0)
    ImageDraw.Draw(drawn).rectangle((0, 0, 100, 150), fill=255)
    drawn.save(mask)
    return picture, mask


@SQLITE
def test_sdk_and_cli_take_an_input_image_and_mask(bridge: Bridge, tmp_path: Path) -> None:
    picture, mask = _drawn(tmp_path)
    key = bridge.new_key(points=100)
    size = {"width": 160, "height": 120, "seed": 9}
    with Client(api_key=key, base_url=bridge.base) as client:
        plain = client.images.generate("a sunflower", **size)
        from_path = client.images.generate("a sunflower", image=picture, strength=0.5, **size)
        from_bytes = client.images.generate(
            "a sunflower", image=picture.read_bytes(), strength=0.5, **size
        )
        inpainted = client.images.generate(
            "a sunflower", image=picture, mask=mask.read_bytes(), **size
        )
        with pytest.raises(ValidationError) as maskless:
            client.images.generate("a sunflower", mask=mask)
        assert [d["field"] for d in maskless.value.details] == ["mask_base64"]
        projects = {p.id: p for p in client.projects.list(type="images")}
    outputs = [r.save(tmp_path / r.generation_id)[0] for r in (plain, from_path, from_bytes)]
    assert _pixels(outputs[1]) == _pixels(outputs[2])  # a path and its bytes: the same input
    assert _pixels(outputs[0]) != _pixels(outputs[1])
    meta = projects[inpainted.generation_id].metadata
    assert meta["mode"] == "inpaint" and meta["input_image"] and meta["mask_image"]
    assert projects[from_path.generation_id].metadata["strength"] == 0.5

    env = {"GENSERVE_BASE_URL": bridge.base, "GENSERVE_API_KEY": key}
    args = ["a sunflower", "--seed", "9", "--size", "160x120", "--image", str(picture)]
    done = genserve(tmp_path, "image", *args, "--strength", "0.5", "-o", str(tmp_path / "c"), **env)
    assert done.returncode == 0, done.stderr
    assert _pixels(Path(done.stdout.strip())) == _pixels(outputs[1])
    painted = genserve(
        tmp_path, "image", *args, "--mask", str(mask), "-o", str(tmp_path / "d"), **env
    )
    assert painted.returncode == 0, painted.stderr
    with Image.open(painted.stdout.strip()) as out:
        assert out.size == (160, 120)
    missing = genserve(tmp_path, "image", "x", "--image", str(tmp_path / "none.png"), **env)
    assert missing.returncode != 0 and "no such file" in missing.stderr
    no_traceback(missing)
    bad = genserve(tmp_path, "image", "x", "--image", str(picture), "--strength", "2", **env)
    assert bad.returncode == 2 and "at most 1" in bad.stderr
