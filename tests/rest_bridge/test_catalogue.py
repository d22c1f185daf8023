"""The bridge learns its models from the inference servers (ListModels), never from a file.

Two inference servers serve different model files; the bridge has none. Every
model is listed and generates on the server that serves it, and each server's
narrower options are enforced before any debit.
"""

from __future__ import annotations

import ast
import base64
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import httpx
import pytest
from PIL import Image
from sqlmodel import Session, select

from storage.db import make_engine, migrate
from storage.models import Account, Generation
from tests.conftest import Bridge, InferenceProc, bridge_env
from tests.utils.procs import ROOT, start_bridge, start_inference

pytestmark = pytest.mark.server  # starts real servers (not in make test-fast)

FIRST = """
[models.nano-banana]
kind = "image"
source = "builtin:tiny-sdxl"
default = true
width = 128
height = 128
steps = 2

[models.studio-sketch]
kind = "image"
source = "builtin:tiny-sdxl"
width = 64
height = 64
steps = 2
aspect_ratios = ["1:1", "16:9"]
output_formats = ["png", "webp"]
max_images = 2
"""

SECOND = """
[models.night-owl]
kind = "image"
source = "builtin:tiny-sdxl"
width = 64
height = 64
steps = 2

[models.relief-lite]
kind = "mesh"
source = "builtin:relief"
steps = 2
orientations = ["default"]

[models.quick-clip]
kind = "video"
source = "builtin:tiny-ltx-video"
pipeline = "LTXPipeline"
steps = 2
guidance = 3.0
size_factor = 32
frame_rate = 8.0
temporal_factor = 8
default_duration = 2
preload = false
"""


@dataclass
class Fleet:
    first: InferenceProc
    second: InferenceProc
    bridge: Bridge


@pytest.fixture(scope="module")
def fleet(
    model_cache: Path, logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("catalogue")
    servers = []
    for name, text in (("first", FIRST), ("second", SECOND)):
        models = tmp / f"{name}.toml"
        models.write_text(text)
        proc, port, metrics_port = start_inference(model_cache, logs, models_file=models)
        servers.append(InferenceProc(proc, port, metrics_port))
    db_url = f"sqlite:///{tmp / 'genserve.db'}"
    targets = ",".join(s.target for s in servers)
    env = bridge_env(tmp, db_url, targets)
    assert not any("MODELS_FILE" in k for k in env)  # the bridge sees no model file
    proc, base = start_bridge(env, logs)
    engine = make_engine(db_url)
    migrate(engine)
    yield Fleet(servers[0], servers[1], Bridge(base, engine, tmp, proc))
    proc.stop()
    engine.dispose()
    for server in servers:
        server.proc.stop()


def _models(fleet: Fleet, key: str) -> dict[str, dict[str, object]]:
    with fleet.bridge.client(key) as c:
        r = c.get("/api/v1/models")
    assert r.status_code == 200, r.text
    return {m["name"]: m for m in r.json()["data"]["models"]}


def test_models_of_every_server_are_listed_with_their_options(fleet: Fleet) -> None:
    models = _models(fleet, fleet.bridge.new_key())
    assert set(models) == {"nano-banana", "studio-sketch", "night-owl", "relief-lite", "quick-clip"}
    sketch = models["studio-sketch"]
    assert sketch["kind"] == "image" and sketch["default"] is False
    assert sketch["aspect_ratios"] == ["1:1", "16:9"]
    assert sketch["output_formats"] == ["png", "webp"]
    assert sketch["num_images"] == {"min": 1, "max": 2}
    relief = models["relief-lite"]
    assert relief["kind"] == "3d"  # one name for the kind, though the file said "mesh"
    assert relief["orientation"] == ["default"]
    assert relief["default"] is True  # the only 3D model anywhere


def test_a_mode_the_model_does_not_serve_is_422_before_the_debit(fleet: Fleet) -> None:
    key = fleet.bridge.new_key(points=100)
    before = fleet.first.rpc_count()
    picture = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(picture, "PNG")
    body = {
        "prompt": "a red square, redrawn",
        "model": "studio-sketch",  # text to image only: the entry declares no image_modes
        "image_base64": base64.b64encode(picture.getvalue()).decode(),
    }
    with fleet.bridge.client(key) as c:
        r = c.post("/api/v1/images", json=body)
        assert r.status_code == 422, r.text
        assert r.json()["details"][0]["field"] == "image_base64"
        assert "does not serve image_to_image" in r.json()["error"]
        assert c.get("/api/v1/account").json()["data"]["points"] == 100
    assert _models(fleet, key)["studio-sketch"]["image_modes"] == ["text_to_image"]
    assert fleet.first.rpc_count() == before


@pytest.mark.parametrize(("model", "server"), [("studio-sketch", "first"), ("night-owl", "second")])
def test_a_model_generates_on_the_server_that_serves_it(
    fleet: Fleet, model: str, server: str
) -> None:
    serving: InferenceProc = getattr(fleet, server)
    other: InferenceProc = fleet.second if server == "first" else fleet.first
    before, before_other = serving.rpc_count(), other.rpc_count()
    key = fleet.bridge.new_key(points=100)
    with fleet.bridge.client(key) as c:
        r = c.post("/api/v1/images", json={"prompt": "an owl", "model": model})
        assert r.status_code == 200, r.text
        image = r.json()["data"]["images"][0]
        assert image["width"] == 64 and image["height"] == 64
        assert httpx.get(image["url"]).status_code == 200
    assert serving.rpc_count() == before + 1
    assert other.rpc_count() == before_other


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"aspect_ratio": "4:3"}, "aspect_ratio"),
        ({"output_format": "jpeg"}, "output_format"),
        ({"num_images": 3}, "num_images"),
        ({"model": "no-such-model"}, "model"),
    ],
)
def test_what_the_model_does_not_accept_is_refused_before_any_debit(
    fleet: Fleet, body: dict[str, object], field: str
) -> None:
    key = fleet.bridge.new_key(points=100)
    with fleet.bridge.client(key) as c:
        r = c.post("/api/v1/images", json={"prompt": "a", "model": "studio-sketch", **body})
    assert r.status_code == 422, r.text
    answer = r.json()
    assert answer["code"] == "validation_error"
    assert answer["details"][0]["field"] == field
    with Session(fleet.bridge.engine) as s:
        account = s.exec(select(Account).order_by(Account.id.desc())).first()  # type: ignore[union-attr]
        assert account is not None and account.points == 100
        assert s.exec(select(Generation).where(Generation.account_id == account.id)).first() is None


def test_a_3d_option_the_model_refuses_is_a_422(fleet: Fleet) -> None:
    key = fleet.bridge.new_key(points=100)
    with fleet.bridge.client(key) as c:
        r = c.post(
            "/api/v1/3d",
            json={"image_url": "https://example.com/a.png", "orientation": "align_image"},
        )
    assert r.status_code == 422, r.text
    assert r.json()["details"][0]["field"] == "orientation"


def test_an_omitted_duration_is_the_models_default(fleet: Fleet) -> None:
    """A body without ``duration`` gets the model's ``default_duration`` (here 2 s, not 4):
    made, answered, priced and recorded as such."""
    key = fleet.bridge.new_key(points=100)
    listed = _models(fleet, key)["quick-clip"]
    assert listed["duration"] == {"min": 1, "max": 10, "default": 2}
    with fleet.bridge.client(key) as c:
        r = c.post(
            "/api/v1/videos",
            json={"prompt": "a kite", "model": "quick-clip", "resolution": "360p"},
        )
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        projects = c.get("/api/v1/projects", params={"type": "videos"}).json()["data"]
    video = data["video"]
    assert video["duration"] == 2 and video["frame_count"] == 16  # 2 s at 8 fps
    mp4 = httpx.get(video["url"])
    assert mp4.status_code == 200
    with av.open(io.BytesIO(mp4.content)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == 16
    # 10 points for 4 s at 720p: 2 s at 360p is 10 * 2/4 * 0.25, rounded (4 s would be 2).
    assert data["remaining_points"] == 100 - 1
    assert projects["projects"][0]["metadata"]["duration"] == 2
    with Session(fleet.bridge.engine) as s:
        gen = s.exec(select(Generation).where(Generation.id == video["generation_id"])).one()
    assert gen.params["duration"] == 2 and gen.points_cost == 1


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("rest_bridge", ("inference_server", "torch", "diffusers")),
        ("storage", ("inference_server", "rest_bridge", "torch")),
        ("inference_server", ("rest_bridge", "storage")),
        ("clients/genserve", ("inference_server", "rest_bridge", "storage", "torch", "fastapi")),
    ],
)
def test_nothing_imports_up_or_across(package: str, forbidden: tuple[str, ...]) -> None:
    """The floors of ARCHITECTURE.md: the bridge learns models over gRPC, never by import."""
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in _imports(path)
        if name.split(".")[0] in forbidden
    ]
    assert offenders == []


def test_targets_by_name_and_dns_scheme(fleet: Fleet, logs: Path, tmp_path: Path) -> None:
    """``host:port`` by name and ``dns:///name:port`` reach the same servers."""
    targets = f"localhost:{fleet.first.port}, dns:///localhost:{fleet.second.port}"
    db_url = f"sqlite:///{tmp_path / 'genserve.db'}"
    proc, base = start_bridge(bridge_env(tmp_path, db_url, targets), logs)
    engine = make_engine(db_url)
    migrate(engine)
    bridge = Bridge(base, engine, tmp_path, proc)
    try:
        with bridge.client(bridge.new_key()) as c:
            names = {m["name"] for m in c.get("/api/v1/models").json()["data"]["models"]}
            assert names == {
                "nano-banana",
                "studio-sketch",
                "night-owl",
                "relief-lite",
                "quick-clip",
            }
            r = c.post("/api/v1/images", json={"prompt": "named", "model": "night-owl"})
            assert r.status_code == 200, r.text
    finally:
        proc.stop()
        engine.dispose()


def test_target_lists_are_parsed_as_grpc_reads_them() -> None:
    from rest_bridge.link.channels import parse_targets

    assert parse_targets(" a:1, [::1]:2 ,dns:///b.example:3,a:1") == [
        "a:1",
        "[::1]:2",
        "dns:///b.example:3",
    ]
    with pytest.raises(ValueError):
        parse_targets(" , ")
