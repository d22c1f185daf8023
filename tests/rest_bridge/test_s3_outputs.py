"""GENSERVE_BLOB_URL=s3://...: a real bridge stores outputs in a (moto) bucket and serves them."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from storage.db import make_engine, migrate
from tests.conftest import Bridge, InferenceProc, bridge_env
from tests.utils.procs import start_bridge
from tests.utils.s3 import MotoS3, start_moto

BUCKET = "genserve-outputs"
PREFIX = "outputs"


@pytest.fixture(scope="module")
def moto(logs: Path) -> Iterator[MotoS3]:
    for server in start_moto(logs):
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture(scope="module")
def s3_bridge(
    moto: MotoS3,
    inference: InferenceProc,
    tmp_path_factory: pytest.TempPathFactory,
    logs: Path,
) -> Iterator[Bridge]:
    data_dir = tmp_path_factory.mktemp("bridge-s3")
    db_url = f"sqlite:///{data_dir / 'genserve.db'}"
    env = bridge_env(
        data_dir, db_url, inference.target, GENSERVE_BLOB_URL=f"s3://{BUCKET}/{PREFIX}", **moto.env
    )
    proc, base = start_bridge(env, logs)
    engine = make_engine(db_url)
    migrate(engine)
    yield Bridge(base=base, engine=engine, data_dir=data_dir, proc=proc)
    proc.stop()
    engine.dispose()


@pytest.mark.parametrize(("fmt", "n"), [("png", 1), ("webp", 2)])
def test_outputs_go_to_the_bucket(s3_bridge: Bridge, moto: MotoS3, fmt: str, n: int) -> None:
    key = s3_bridge.new_key(points=100)
    with s3_bridge.client(key) as c:
        r = c.post(
            "/api/v1/images",
            json={"prompt": "A lighthouse at dawn", "output_format": fmt, "num_images": n},
        )
    assert r.status_code == 200, r.text
    images = r.json()["data"]["images"]
    assert len(images) == n
    stored = moto.objects(BUCKET, PREFIX + "/")
    for img in images:
        found = re.fullmatch(
            re.escape(s3_bridge.base) + r"/files/([0-9a-f]{32})/([^/]+)", img["url"]
        )
        assert found, img["url"]
        token, name = found.groups()
        data = stored[f"{PREFIX}/{token}/{name}"]
        assert len(data) == img["file_size"]
        head = moto.client().head_object(Bucket=BUCKET, Key=f"{PREFIX}/{token}/{name}")
        assert head["ContentType"] == f"image/{fmt}"

        f = httpx.get(img["url"])  # capability URL: no key, served through the bridge
        assert f.status_code == 200
        assert f.content == data
        assert f.headers["content-type"] == img["content_type"] == f"image/{fmt}"
        assert f.headers["content-length"] == str(len(data))
        assert f.headers["cache-control"] == "public, max-age=31536000, immutable"
        decoded = Image.open(io.BytesIO(f.content))
        decoded.load()
        assert decoded.size == (img["width"], img["height"])
    assert s3_bridge.blob_files() == 0  # nothing in the local blob folder


def test_a_byte_range_of_a_stored_file_is_a_206(s3_bridge: Bridge, moto: MotoS3) -> None:
    """A player seeking in a video asks for a range; the bucket's answer passes it through."""
    key = s3_bridge.new_key(points=100)
    with s3_bridge.client(key) as c:
        r = c.post("/api/v1/images", json={"prompt": "A heron", "output_format": "png"})
    assert r.status_code == 200, r.text
    url = r.json()["data"]["images"][0]["url"]
    whole = httpx.get(url)
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    data, size = whole.content, len(whole.content)
    part = httpx.get(url, headers={"Range": "bytes=10-99"})
    assert part.status_code == 206
    assert part.content == data[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{size}"
    assert part.headers["content-length"] == "90"
    tail = httpx.get(url, headers={"Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == data[-16:]
    past = httpx.get(url, headers={"Range": f"bytes={size}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
    several = httpx.get(url, headers={"Range": "bytes=0-1,5-9"})  # served whole
    assert several.status_code == 200 and several.content == data


def test_missing_objects_are_404(s3_bridge: Bridge, moto: MotoS3) -> None:
    key = s3_bridge.new_key(points=100)
    with s3_bridge.client(key) as c:
        r = c.post("/api/v1/images", json={"prompt": "A fox"})
    assert r.status_code == 200, r.text
    url = r.json()["data"]["images"][0]["url"]
    assert httpx.get(url).status_code == 200
    object_key = PREFIX + url.split("/files", 1)[1]
    moto.client().delete_object(Bucket=BUCKET, Key=object_key)

    for target in (
        url,
        f"{s3_bridge.base}/files/{'0' * 32}/x.png",
        f"{s3_bridge.base}/files/abc/x.png",
        f"{s3_bridge.base}/files/..%2f..%2fetc/passwd",
    ):
        r = httpx.get(target)
        assert r.status_code == 404, target
        body = r.json()
        assert body["success"] is False
        assert body["code"] == "not_found"
        assert body["request_id"] == r.headers["x-request-id"]
