"""The SDK against a real stack: the session's inference server and bridges (tests/conftest.py).

Most tests use the SQLite bridge only (the SDK does not see the database; the bridge's own
tests cover both); the error mapping runs on PostgreSQL too. Videos are 360p and 1 s.
"""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw

from genserve import (
    AsyncClient,
    AuthenticationError,
    Client,
    ConflictError,
    GenerationCancelledError,
    ImageResult,
    InsufficientPointsError,
    ModelResult,
    NotFoundError,
    ValidationError,
    VideoResult,
)
from tests.conftest import Bridge

SQLITE = pytest.mark.parametrize("bridge", ["sqlite"], indirect=True)


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in ("GENSERVE_CONFIG", "GENSERVE_BASE_URL", "GENSERVE_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def subject_png(path: Path) -> Path:
    """An orange ellipse on a blue backdrop: something for the 3D model to raise."""
    image = Image.new("RGB", (160, 100), (40, 90, 200))
    ImageDraw.Draw(image).ellipse((30, 30, 130, 80), fill=(230, 110, 30))
    image.save(path, "PNG")
    return path


@SQLITE
def test_images_saved_and_listed(bridge: Bridge, tmp_path: Path) -> None:
    key = bridge.new_key(points=100)
    with Client(api_key=key, base_url=bridge.base) as client:
        result = client.images.generate(
            "A lighthouse at dawn", aspect_ratio="16:9", output_format="webp", num_images=2
        )
        assert isinstance(result, ImageResult)
        assert len(result.images) == 2 and result.remaining_points == 92
        assert result.request_id.startswith("req_") and len(result.generation_id) == 24
        assert result.generation_time >= 0 and result.replayed is False
        paths = result.save(tmp_path / "out")
        assert [p.name for p in paths] == [i.file_name for i in result.images]
        for image, path in zip(result.images, paths, strict=True):
            assert image.content_type == "image/webp" and image.aspect_ratio == "16:9"
            assert path.stat().st_size == image.file_size
            with Image.open(path) as decoded:
                assert decoded.format == "WEBP"
                assert decoded.size == (image.width, image.height)

        second = client.images.generate("A second one", output_format="jpeg")
        assert second.remaining_points == 88

        page = client.projects.list(type="images", limit=1)
        assert [p.id for p in page] == [second.generation_id]
        assert (page.pagination.total, page.pagination.pages, page.has_more) == (2, 2, True)
        everything = list(client.projects.iter(type="images", limit=1))
        assert [p.id for p in everything] == [second.generation_id, result.generation_id]
        first = everything[-1]
        assert first.type == "image" and first.prompt == "A lighthouse at dawn"
        assert len(first.outputs) == 2 and first.metadata["aspect_ratio"] == "16:9"
        assert [p.name for p in first.save(tmp_path / "again")] == [p.name for p in paths]
        assert list(client.projects.iter(type="videos")) == []

        found = client.projects.list(q="LIGHTHOUSE")  # by prompt text, any case
        assert [p.id for p in found] == [result.generation_id]
        client.projects.delete(second.generation_id)
        assert [p.id for p in client.projects.iter()] == [result.generation_id]
        with pytest.raises(NotFoundError):
            client.projects.delete(second.generation_id)

        models = client.models.list()
        defaults = {m.kind: m.name for m in models if m.default}
        assert defaults["image"] == "nano-banana"
        banana = next(m for m in models if m.name == "nano-banana")
        assert "16:9" in banana.extra["aspect_ratios"] and banana.price

        account = client.account.get()
        assert (account.plan, account.points, account.limit) == ("free", 88, 100)
        assert 0 < account.remaining < 100


@SQLITE
def test_events_jobs_and_cancel(bridge: Bridge) -> None:
    key = bridge.new_key(points=100)
    with Client(api_key=key, base_url=bridge.base) as client:
        with client.images.generate("streamed", stream=True) as stream:
            events = list(stream)
        kinds = [e.type for e in events]
        assert kinds[0] == "queued" and kinds[-1] == "completed"
        steps = [e.step for e in events if e.type == "progress" and e.stage == "denoising"]
        assert steps and steps == sorted(steps) and events[1].total
        assert isinstance(stream.result, ImageResult) and stream.result.remaining_points == 96

        job = client.images.submit("later", output_format="png")
        assert len(job.generation_id) == 24 and job.request_id.startswith("req_")
        done = job.wait(timeout=60)
        assert done.generation_id == job.generation_id and done.remaining_points == 92
        status = job.status()
        assert status.status == "completed" and status.done
        assert isinstance(status.result, ImageResult)
        assert status.result.images[0].url == done.images[0].url
        replay = list(job.events())
        assert replay[-1].type == "completed" and replay[-1].result is not None
        resumed = list(client.generations.events(job.generation_id, last_event_id=replay[-2].id))
        assert [e.id for e in resumed] == [replay[-1].id]
        with pytest.raises(ConflictError) as finished:
            job.cancel()
        assert finished.value.code == "generation_finished"

        # The document's default video (720p, 4 s) takes seconds: cancelled at once, refunded.
        video = client.videos.submit("a long one")
        cancelled = video.cancel()
        assert cancelled.status == "cancelled" and cancelled.refunded_points == 10
        with pytest.raises(GenerationCancelledError) as stopped:
            video.wait(timeout=60)
        assert stopped.value.code == "generation_cancelled"
        assert video.status().status == "cancelled"
        assert client.account.get().points == 92

        with pytest.raises(NotFoundError):
            client.generations.get("0" * 24)


@SQLITE
def test_video_and_3d(bridge: Bridge, tmp_path: Path) -> None:
    key = bridge.new_key(points=100)
    with Client(api_key=key, base_url=bridge.base) as client:
        video = client.videos.generate(
            "waves on a beach", resolution="360p", duration=1, aspect_ratio="16:9"
        )
        assert isinstance(video, VideoResult)
        clip = video.video
        assert clip.content_type == "video/mp4" and clip.resolution == "360p"
        assert clip.duration == 1 and clip.generation_id == video.generation_id
        assert clip.height == 360 and clip.model == "vidu-q2"
        saved = clip.save(tmp_path)
        assert saved.suffix == ".mp4" and saved.stat().st_size == clip.file_size
        assert video.remaining_points == 99

        png = subject_png(tmp_path / "object.png")
        mesh = client.three_d.generate(image_path=png, texture_quality="standard")
        assert isinstance(mesh, ModelResult)
        assert mesh.model.content_type == "model/gltf-binary"
        assert mesh.model.texture_quality == "standard"
        assert mesh.remaining_points == 79
        [glb] = mesh.save(tmp_path / "mesh")
        assert glb.read_bytes()[:4] == b"glTF" and glb.stat().st_size == mesh.model.file_size
        preview = mesh.model.preview()
        assert preview is not None
        with Image.open(preview.save(tmp_path / "mesh" / "preview.jpg")) as shown:
            assert shown.format == "JPEG"


@pytest.mark.parametrize("bridge", ["sqlite", "postgresql"], indirect=True)
def test_errors_are_typed(bridge: Bridge) -> None:
    with Client(api_key="gsk_" + "x" * 40, base_url=bridge.base) as client:
        with pytest.raises(AuthenticationError) as bad_key:
            client.account.get()
    assert bad_key.value.status == 401 and bad_key.value.code == "invalid_api_key"
    assert (bad_key.value.request_id or "").startswith("req_")

    broke = bridge.new_key(points=0)
    with Client(api_key=broke, base_url=bridge.base) as client:
        with pytest.raises(InsufficientPointsError) as poor:
            client.images.generate("x")
        assert poor.value.status == 402 and poor.value.code == "insufficient_points"
        assert poor.value.request_id == poor.value.headers.get("x-request-id")
        with pytest.raises(ValidationError) as invalid:
            client.images.generate("x", aspect_ratio="7:3")
        assert invalid.value.status == 422 and invalid.value.code == "validation_error"
        assert [d["field"] for d in invalid.value.details] == ["aspect_ratio"]
        assert (invalid.value.request_id or "").startswith("req_")
        with pytest.raises(ValidationError) as bad_query:
            client.projects.list(limit=1000)
        assert bad_query.value.status == 400 and bad_query.value.code == "invalid_request"


class LoseFirstAnswer(httpx.BaseTransport):
    """Forwards every request; the first generation's answer is lost on the way back."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.keys: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and request.url.path == "/api/v1/images":
            self.keys.append(request.headers.get("idempotency-key"))
            if len(self.keys) == 1:
                response.read()
                response.close()
                raise httpx.ReadError("connection reset after the server answered")
        return response

    def close(self) -> None:
        self.inner.close()


@SQLITE
def test_a_retry_with_the_sdk_key_debits_once(bridge: Bridge) -> None:
    key = bridge.new_key(points=100)
    transport = LoseFirstAnswer()
    with Client(api_key=key, base_url=bridge.base, transport=transport) as client:
        client.retry.backoff_base = 0.05
        result = client.images.generate("only once")
        assert len(transport.keys) == 2 and transport.keys[0] == transport.keys[1]
        assert result.replayed is True
        assert result.remaining_points == 96
        assert client.account.get().points == 96
        assert client.projects.list().pagination.total == 1
        # An explicit key: the second call is the first one's answer, not a new debit.
        first = client.images.generate("explicit", idempotency_key="order-42")
        second = client.images.generate("explicit", idempotency_key="order-42")
        assert second.replayed and second.generation_id == first.generation_id
        assert client.account.get().points == 92


@SQLITE
async def test_async_client(bridge: Bridge, tmp_path: Path) -> None:
    key = bridge.new_key(points=100)
    async with AsyncClient(api_key=key, base_url=bridge.base) as client:
        stream = await client.images.generate("async stream", stream=True)
        kinds = [e.type async for e in stream]
        assert kinds[0] == "queued" and kinds[-1] == "completed"
        assert stream.result is not None and stream.result.remaining_points == 96
        paths = await stream.result.asave(tmp_path)
        assert len(paths) == 1 and paths[0].stat().st_size == stream.result.images[0].file_size
        with Image.open(io.BytesIO(paths[0].read_bytes())) as decoded:
            assert decoded.format == "PNG"

        job = await client.images.submit("async job")
        done = await job.wait(timeout=60)
        assert done.generation_id == job.generation_id
        assert (await job.status()).status == "completed"
        events = [e.type async for e in job.events()]
        assert events[-1] == "completed"

        ids = [p.id async for p in client.projects.iter(limit=1)]
        assert ids == [done.generation_id, stream.result.generation_id]
        assert (await client.account.get()).points == 92
        assert any(m.name == "nano-banana" for m in await client.models.list())

    async with AsyncClient(api_key="gsk_wrong", base_url=bridge.base) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.images.generate("x")
    assert caught.value.code == "invalid_api_key"
