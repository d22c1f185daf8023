"""POST /api/v1/3d end to end: real bridges, the real inference server, real databases.

Image URLs are served by HTTP servers on 127.0.0.1 inside the test process.
The default bridge must refuse every loopback spelling without connecting
(the servers count connections); a second bridge, started here with the
loopback relaxation switched on through configuration, fetches from them.
No test names an address off this machine.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import trimesh
from PIL import Image, ImageDraw
from sqlmodel import Session, select

from storage.db import make_engine, migrate
from storage.models import Account, Generation
from tests.conftest import Bridge, InferenceProc, bridge_env
from tests.rest_bridge import test_safe_fetch as fetch_tests
from tests.rest_bridge.test_image_input import png_with_header, zero_bomb
from tests.rest_bridge.test_safe_fetch import (
    SECRET,
    LoopbackServer,
    body_route,
    redirect_route,
)
from tests.utils.glb import glb_json, primitive_attributes
from tests.utils.procs import free_port, start_bridge

serve = fetch_tests.serve

MAX_UPLOAD = 20 * 1024 * 1024
SUBJECT = (230, 110, 30)
BACKDROP = (40, 90, 200)
PRICE = 20


# --- inputs and readers ---------------------------------------------------------------


def subject_photo(image_format: str = "PNG") -> bytes:
    """An orange ellipse twice as wide as tall on a plain blue backdrop, with a little shading."""
    image = Image.new("RGB", (320, 200), BACKDROP)
    draw = ImageDraw.Draw(image)
    draw.ellipse((60, 60, 260, 160), fill=SUBJECT)
    draw.ellipse((120, 85, 170, 110), fill=(250, 170, 80))
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def load_mesh(data: bytes) -> trimesh.Trimesh:
    scene = trimesh.load(io.BytesIO(data), file_type="glb")
    assert isinstance(scene, trimesh.Scene)
    assert len(scene.geometry) == 1
    mesh = next(iter(scene.geometry.values()))
    assert isinstance(mesh, trimesh.Trimesh)
    return mesh


def share_near(pixels: np.ndarray, colour: tuple[int, int, int], tolerance: float = 60) -> float:
    """The share of ``pixels`` (N x 3) within ``tolerance`` of ``colour``."""
    distance = np.linalg.norm(pixels[:, :3].astype(float) - np.asarray(colour, float), axis=1)
    return float((distance < tolerance).mean())


def download(url: str, content_type: str) -> bytes:
    response = httpx.get(url)  # capability URL: no key
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    return response.content


def check_model_response(response: httpx.Response, texture_quality: str) -> dict[str, Any]:
    """The document's response shape, exactly; returns ``data``."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    data = body["data"]
    assert set(data) == {"model", "generation_time", "remaining_points", "request_id"}
    assert data["request_id"] == response.headers["x-request-id"]
    assert isinstance(data["generation_time"], int)
    model = data["model"]
    assert set(model) == {
        "url",
        "preview_image",
        "content_type",
        "file_name",
        "file_size",
        "texture_quality",
        "generation_id",
    }
    assert model["content_type"] == "model/gltf-binary"
    assert re.fullmatch(r"3d-model-[0-9a-f]{24}-1\.glb", model["file_name"])
    assert re.fullmatch(r"[0-9a-f]{24}", model["generation_id"])
    assert model["texture_quality"] == texture_quality
    assert model["preview_image"] != model["url"]
    return dict(data)


def check_preview(url: str, source: bytes) -> np.ndarray:
    """The preview is a JPEG render, not the input: returns its pixels."""
    data = download(url, "image/jpeg")
    assert data != source
    preview = Image.open(io.BytesIO(data))
    preview.load()
    assert preview.format == "JPEG"
    assert preview.size == (512, 512)
    pixels = np.asarray(preview.convert("RGB"), dtype=float)
    original = Image.open(io.BytesIO(source)).convert("RGB").resize(preview.size)
    assert np.abs(pixels - np.asarray(original, dtype=float)).mean() > 20
    # A white stage with the object in it, not a picture filling the frame.
    background = (pixels > 245).all(axis=2)
    assert 0.2 < background.mean() < 0.95
    covered: np.ndarray = pixels[~background]
    return covered


# --- the relief model through every option ------------------------------------------------

# Each value of each option appears, and each pair of texture options.
RELIEF_OPTIONS = [
    ("standard", "original_image", "default"),
    ("standard", "geometry", "align_image"),
    ("no", "original_image", "align_image"),
    ("no", "geometry", "default"),
]


@pytest.mark.parametrize(("quality", "alignment", "orientation"), RELIEF_OPTIONS)
def test_relief_glb_carries_what_the_options_ask(
    bridge: Bridge, inference: InferenceProc, quality: str, alignment: str, orientation: str
) -> None:
    key = bridge.new_key(points=100)
    source = subject_photo()
    rpcs = inference.rpc_count()
    with bridge.client(key) as c:
        response = c.post(
            "/api/v1/3d",
            json={
                "image_base64": b64(source),
                "texture_quality": quality,
                "texture_alignment": alignment,
                "orientation": orientation,
            },
        )
    data = check_model_response(response, quality)
    assert data["remaining_points"] == 100 - PRICE
    assert inference.rpc_count() == rpcs + 1
    model = data["model"]
    glb = download(model["url"], "model/gltf-binary")
    assert len(glb) == model["file_size"]

    document = glb_json(glb)
    mesh = load_mesh(glb)
    assert mesh.is_watertight
    assert mesh.is_volume
    # The subject is twice as wide as tall, and so is the solid raised from it.
    width, height, depth = mesh.extents
    assert width / height == pytest.approx(2.0, rel=0.1)
    assert 0.05 < depth < width
    assert "COLOR_0" not in primitive_attributes(document)
    preview = check_preview(model["preview_image"], source)
    if quality == "no":
        assert "images" not in document and "textures" not in document
        assert "TEXCOORD_0" not in primitive_attributes(document)
        assert getattr(mesh.visual, "kind", "missing") is None
        # Plain grey shading: no colour anywhere on the object.
        assert np.abs(preview.max(axis=1) - preview.min(axis=1)).mean() < 12
    else:
        assert document["images"] and document["textures"]
        material = document["materials"][0]["pbrMetallicRoughness"]
        assert "baseColorTexture" in material
        assert "TEXCOORD_0" in primitive_attributes(document)
        assert isinstance(mesh.visual, trimesh.visual.TextureVisuals)
        texture = mesh.visual.material.baseColorTexture
        assert isinstance(texture, Image.Image)
        texels = np.asarray(texture.convert("RGB")).reshape(-1, 3)
        assert share_near(texels, SUBJECT) > 0.15
        # The object wears the subject's orange, lit.
        assert preview[:, 0].mean() > preview[:, 2].mean() + 60


def test_data_url_jpeg_with_the_documents_defaults_is_a_3d_project(bridge: Bridge) -> None:
    key = bridge.new_key(points=100)
    source = subject_photo("JPEG")
    with bridge.client(key) as c:
        response = c.post(
            "/api/v1/3d", json={"image_base64": "data:image/jpeg;base64," + b64(source)}
        )
        data = check_model_response(response, "standard")
        model = data["model"]
        listing = c.get("/api/v1/projects", params={"type": "3d"})
        images_only = c.get("/api/v1/projects", params={"type": "images"})
    assert "TEXCOORD_0" in primitive_attributes(
        glb_json(download(model["url"], "model/gltf-binary"))
    )

    assert listing.status_code == 200, listing.text
    projects = listing.json()["data"]["projects"]
    assert len(projects) == 1
    project = projects[0]
    assert project["id"] == model["generation_id"]
    assert project["type"] == "3d"
    assert project["url"] == model["url"]
    assert project["thumbnail"] == model["preview_image"]
    assert project["model"] == "relief"
    metadata = project["metadata"]
    assert metadata["texture_quality"] == "standard"
    assert metadata["texture_alignment"] == "original_image"
    assert metadata["orientation"] == "default"
    assert metadata["file_size"] == model["file_size"]
    # No prompt; the input image gives the size and ratio (320x200 is 8:5).
    assert project["prompt"] == ""
    assert metadata["dimensions"] == "320x200"
    assert metadata["aspect_ratio"] == "8:5"
    assert images_only.json()["data"]["projects"] == []

    with Session(bridge.engine) as s:
        generation = s.exec(select(Generation).where(Generation.id == model["generation_id"])).one()
        account = s.get(Account, generation.account_id)
    assert generation.status == "completed"
    assert generation.points_cost == PRICE
    assert account is not None and account.points == 100 - PRICE


# --- Shap-E ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quality", "alignment", "expected"),
    [
        ("standard", "geometry", "COLOR_0"),
        ("standard", "original_image", "TEXCOORD_0"),
        ("no", "geometry", None),
    ],
)
def test_shap_e_colours_follow_the_options(
    bridge: Bridge, quality: str, alignment: str, expected: str | None
) -> None:
    key = bridge.new_key(points=100)
    source = subject_photo()
    with bridge.client(key) as c:
        response = c.post(
            "/api/v1/3d",
            json={
                "model": "shap-e",
                "image_base64": b64(source),
                "texture_quality": quality,
                "texture_alignment": alignment,
                "orientation": "align_image",
            },
        )
    data = check_model_response(response, quality)
    glb = download(data["model"]["url"], "model/gltf-binary")
    document = glb_json(glb)
    mesh = load_mesh(glb)
    assert len(mesh.faces) > 100
    found = primitive_attributes(document) & {"COLOR_0", "TEXCOORD_0"}
    assert found == ({expected} if expected else set())
    if expected == "COLOR_0":
        assert "images" not in document
        assert isinstance(mesh.visual, trimesh.visual.ColorVisuals)
        assert mesh.visual.kind == "vertex"
    if expected == "TEXCOORD_0":
        assert document["images"]
    check_preview(data["model"]["preview_image"], source)


# --- bad input -----------------------------------------------------------------------------


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("P", (8, 8)).save(buffer, "GIF")
    return buffer.getvalue()


def _just_over_the_limit() -> str:
    """Base64 of one byte more than 20 MB: small enough to be parsed, too big to decode."""
    return "A" * (4 * -(-(MAX_UPLOAD + 1) // 3))


PNG = b64(subject_photo())

BAD_INPUT: list[tuple[str, dict[str, Any], int, str, str]] = [
    ("both", {"image_url": "http://127.0.0.1:9/a.png", "image_base64": PNG}, 422, "", "image_url"),
    ("neither", {}, 422, "", "image_base64"),
    ("neither-but-options", {"texture_quality": "no"}, 422, "", "image_url"),
    ("null-both", {"image_url": None, "image_base64": None}, 422, "", "image_url"),
    ("invalid-base64", {"image_base64": "not base64!!"}, 422, "", "image_base64"),
    ("bad-padding", {"image_base64": "QUJD===="}, 422, "", "image_base64"),
    ("empty-base64", {"image_base64": ""}, 422, "", "image_base64"),
    ("bad-data-url", {"image_base64": "data:image/png," + PNG}, 422, "", "image_base64"),
    (
        "not-an-image",
        {"image_base64": b64(b"<html>" + SECRET + b"</html>")},
        422,
        "",
        "image_base64",
    ),
    ("gif", {"image_base64": b64(_gif())}, 422, "", "image_base64"),
    ("truncated", {"image_base64": b64(subject_photo()[:400])}, 422, "", "image_base64"),
    ("header-bomb", {"image_base64": b64(png_with_header(10_000, 6_000))}, 422, "", "image_base64"),
    ("zlib-bomb", {"image_base64": b64(zero_bomb(10_000))}, 422, "", "image_base64"),
    (
        "over-20-mb",
        {"image_base64": _just_over_the_limit()},
        413,
        "payload_too_large",
        "image_base64",
    ),
    ("quality", {"image_base64": PNG, "texture_quality": "high"}, 422, "", "texture_quality"),
    ("alignment", {"image_base64": PNG, "texture_alignment": "uv"}, 422, "", "texture_alignment"),
    ("orientation", {"image_base64": PNG, "orientation": "upside_down"}, 422, "", "orientation"),
    ("quality-type", {"image_base64": PNG, "texture_quality": 1}, 422, "", "texture_quality"),
    ("base64-type", {"image_base64": 12345}, 422, "", "image_base64"),
    ("unknown-field", {"image_base64": PNG, "prompt": "a chair"}, 422, "", "prompt"),
    ("unknown-model", {"image_base64": PNG, "model": "nano-banana"}, 422, "", "model"),
    ("ftp-url", {"image_url": "ftp://127.0.0.1/a.png"}, 422, "", "image_url"),
    ("empty-url", {"image_url": ""}, 422, "", "image_url"),
    ("credentials-url", {"image_url": "http://user:pw@127.0.0.1/a.png"}, 422, "", "image_url"),
]


class NoWork:
    """Takes the counts that must not move when a request is refused."""

    def __init__(self, bridge: Bridge, inference: InferenceProc) -> None:
        self.bridge = bridge
        self.inference = inference
        self.before = self._now()

    def _now(self) -> tuple[tuple[int, int], int, float]:
        return self.bridge.row_counts(), self.bridge.blob_files(), self.inference.rpc_count()

    def check(self) -> None:
        assert self._now() == self.before


def check_refusal(response: httpx.Response, status: int, code: str, field: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert body["code"] == (code or "validation_error")
    assert body["request_id"] == response.headers["x-request-id"]
    assert SECRET.decode() not in response.text
    if field:
        assert any(d["field"] == field for d in body["details"]), body


@pytest.mark.parametrize(
    ("payload", "status", "code", "field"),
    [case[1:] for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
def test_bad_input_is_refused_before_any_work(
    bridge: Bridge,
    inference: InferenceProc,
    payload: dict[str, Any],
    status: int,
    code: str,
    field: str,
) -> None:
    key = bridge.new_key(points=100)
    no_work = NoWork(bridge, inference)
    with bridge.client(key) as c:
        response = c.post("/api/v1/3d", json=payload)
    check_refusal(response, status, code, field)
    no_work.check()


def _huge_body() -> bytes:
    """Bytes past the body limit that are not even JSON: a 400 would mean they were parsed."""
    return b"{" + b"A" * (4 * MAX_UPLOAD // 3 + 4 * 1024 * 1024)


def test_an_oversized_body_is_a_413_before_it_is_read(
    bridge: Bridge, inference: InferenceProc
) -> None:
    key = bridge.new_key(points=100)
    no_work = NoWork(bridge, inference)
    huge = _huge_body()
    with bridge.client(key) as c:
        declared = c.post("/api/v1/3d", content=huge, headers={"Content-Type": "application/json"})

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(huge), 1024 * 1024):
                yield huge[start : start + 1024 * 1024]

        chunked = c.post(
            "/api/v1/3d", content=chunks(), headers={"Content-Type": "application/json"}
        )
    check_refusal(declared, 413, "payload_too_large", "image_base64")
    check_refusal(chunked, 413, "payload_too_large", "image_base64")
    # The caller is known before the size is judged: an anonymous body is never read
    # (tests/rest_bridge/test_body_limits.py).
    anonymous = httpx.post(
        f"{bridge.base}/api/v1/3d", content=huge, headers={"Content-Type": "application/json"}
    )
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json()["code"] == "invalid_api_key"
    no_work.check()


def test_too_few_points_is_a_402_before_any_work(bridge: Bridge, inference: InferenceProc) -> None:
    key = bridge.new_key(points=PRICE - 1)
    no_work = NoWork(bridge, inference)
    with bridge.client(key) as c:
        response = c.post("/api/v1/3d", json={"image_base64": PNG})
    check_refusal(response, 402, "insufficient_points", "")
    no_work.check()


# --- image_url ----------------------------------------------------------------------------

LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "2130706433",
    "0177.0.0.1",
    "0x7f.1",
    "127.1",
    "[::ffff:127.0.0.1]",
    "[::1]",
    "localhost",
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_default_bridge_refuses_loopback_urls_without_connecting(
    bridge: Bridge,
    inference: InferenceProc,
    serve: Callable[..., LoopbackServer],
    host: str,
) -> None:
    server = serve({"/img.png": body_route(subject_photo())})
    key = bridge.new_key(points=100)
    no_work = NoWork(bridge, inference)
    with bridge.client(key) as c:
        response = c.post("/api/v1/3d", json={"image_url": server.url(host=host)})
    check_refusal(response, 422, "", "image_url")
    assert server.connections == 0
    assert str(server.port) not in response.json()["error"]
    no_work.check()


@pytest.fixture(scope="module")
def loopback_bridge(
    inference: InferenceProc, tmp_path_factory: pytest.TempPathFactory, logs: Path
) -> Iterator[Bridge]:
    """A bridge allowed to fetch from loopback, as only tests and dev setups configure."""
    data_dir = tmp_path_factory.mktemp("bridge-loopback")
    db_url = f"sqlite:///{data_dir / 'genserve.db'}"
    env = bridge_env(data_dir, db_url, inference.target, GENSERVE_FETCH_ALLOW_LOOPBACK="true")
    proc, base = start_bridge(env, logs)
    engine = make_engine(db_url)
    migrate(engine)
    yield Bridge(base=base, engine=engine, data_dir=data_dir, proc=proc)
    proc.stop()
    engine.dispose()


def test_image_url_is_fetched_through_redirects_and_never_echoed(
    loopback_bridge: Bridge, serve: Callable[..., LoopbackServer]
) -> None:
    source = subject_photo("JPEG")
    server = serve({"/img.jpg": body_route(source, content_type="image/jpeg")})
    server.routes["/moved"] = redirect_route(server.url("/img.jpg"))
    key = loopback_bridge.new_key(points=100)
    url = server.url("/moved") + "?token=" + SECRET.decode()
    with loopback_bridge.client(key) as c:
        response = c.post("/api/v1/3d", json={"image_url": url, "texture_quality": "standard"})
    data = check_model_response(response, "standard")
    assert [path.partition("?")[0] for path in server.paths()] == ["/moved", "/img.jpg"]
    assert SECRET.decode() not in response.text
    assert str(server.port) not in response.text
    mesh = load_mesh(download(data["model"]["url"], "model/gltf-binary"))
    assert mesh.is_watertight
    check_preview(data["model"]["preview_image"], source)


def test_fetched_bodies_are_held_to_the_image_rules(
    loopback_bridge: Bridge, inference: InferenceProc, serve: Callable[..., LoopbackServer]
) -> None:
    server = serve(
        {
            "/page": body_route(b"<html>" + SECRET + b"</html>", content_type="image/png"),
            "/bomb.png": body_route(png_with_header(10_000, 6_000)),
            "/missing": body_route(SECRET, status=404),
            "/loop": redirect_route("/loop"),
        }
    )
    key = loopback_bridge.new_key(points=100)
    no_work = NoWork(loopback_bridge, inference)
    with loopback_bridge.client(key) as c:
        for path in ("/page", "/bomb.png", "/missing", "/loop"):
            response = c.post("/api/v1/3d", json={"image_url": server.url(path)})
            check_refusal(response, 422, "", "image_url")
    # The redirect loop is followed three times and then given up.
    assert server.paths().count("/loop") == 4
    no_work.check()


@pytest.mark.server
def test_no_inference_server_is_503_before_any_debit(tmp_path: Path, logs: Path) -> None:
    """Inference unreachable: 503 before any debit or row."""
    db_url = f"sqlite:///{tmp_path / 'genserve.db'}"
    env = bridge_env(tmp_path, db_url, f"127.0.0.1:{free_port()}")
    proc, base = start_bridge(env, logs, wait_healthy=False)
    engine = make_engine(db_url)
    migrate(engine)
    bridge = Bridge(base=base, engine=engine, data_dir=tmp_path, proc=proc)
    try:
        key = bridge.new_key(points=100)
        with bridge.client(key) as c:
            response = c.post("/api/v1/3d", json={"image_base64": PNG})
        check_refusal(response, 503, "inference_unavailable", "")
        with Session(engine) as s:
            assert s.exec(select(Generation)).first() is None
            assert s.exec(select(Account)).one().points == 100
        assert bridge.blob_files() == 0
    finally:
        proc.stop()
        engine.dispose()
