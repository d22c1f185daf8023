"""The S3 blob store against a local moto server, and the local store through the same protocol."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.blobs import (
    BlobStore,
    LocalBlobStore,
    RangeNotSatisfiable,
    S3BlobStore,
    blob_store_from_url,
    parse_range,
)
from tests.utils.s3 import MotoS3, start_moto

pytestmark = pytest.mark.server  # starts real servers (not in make test-fast)

BUCKET = "genserve-blobs"


@pytest.fixture(scope="module")
def moto(logs: Path) -> Iterator[MotoS3]:
    for server in start_moto(logs):
        server.create_bucket(BUCKET)
        with pytest.MonkeyPatch.context() as mp:
            for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
                mp.delenv(name, raising=False)
            for name, value in server.env.items():
                mp.setenv(name, value)
            yield server


@pytest.fixture
def s3_store(moto: MotoS3, tmp_path: Path) -> S3BlobStore:
    store = blob_store_from_url(f"s3://{BUCKET}/outputs/run-{secrets.token_hex(4)}", tmp_path)
    assert isinstance(store, S3BlobStore)
    return store


def _key(name: str = "image.png") -> str:
    return f"{secrets.token_hex(16)}/{name}"


def test_put_open_delete(s3_store: S3BlobStore, moto: MotoS3, tmp_path: Path) -> None:
    key, data = _key(), secrets.token_bytes(700_000)  # several chunks
    s3_store.put(key, data)
    assert moto.objects(BUCKET, s3_store.prefix + "/") == {f"{s3_store.prefix}/{key}": data}
    head = moto.client().head_object(Bucket=BUCKET, Key=f"{s3_store.prefix}/{key}")
    assert head["ContentType"] == "image/png"

    blob = s3_store.open(key)
    assert blob is not None
    assert blob.size == len(data)
    with blob:
        chunks = list(blob)
    assert len(chunks) > 1
    assert b"".join(chunks) == data
    assert s3_store.path(key) is None  # served by streaming, never from a local path
    assert not any(tmp_path.iterdir())  # the local folder is not even created

    s3_store.delete(key)
    assert s3_store.open(key) is None
    assert moto.objects(BUCKET, s3_store.prefix + "/") == {}
    s3_store.delete(key)  # deleting a missing key is no error


def test_missing_and_malformed_keys(s3_store: S3BlobStore) -> None:
    assert s3_store.open(_key()) is None
    for bad in ("../x.png", "abc/x.png", f"{'0' * 32}/../x.png", f"{'0' * 32}/a/b.png", ""):
        assert s3_store.open(bad) is None
        with pytest.raises(ValueError):
            s3_store.put(bad, b"x")
        with pytest.raises(ValueError):
            s3_store.delete(bad)


def test_prefix_is_optional(moto: MotoS3, tmp_path: Path) -> None:
    store = blob_store_from_url(f"s3://{BUCKET}", tmp_path)
    assert isinstance(store, S3BlobStore) and store.prefix == ""
    key = _key("mesh.glb")
    store.put(key, b"glTF")
    assert moto.objects(BUCKET, key) == {key: b"glTF"}
    blob = store.open(key)
    assert blob is not None and blob.read() == b"glTF"
    store.delete(key)


def test_factory(tmp_path: Path) -> None:
    assert isinstance(blob_store_from_url(None, tmp_path / "a"), LocalBlobStore)
    assert isinstance(blob_store_from_url("", tmp_path / "b"), LocalBlobStore)
    for bad in ("s3:///prefix", "gs://bucket/prefix", "/some/folder"):
        with pytest.raises(ValueError):
            blob_store_from_url(bad, tmp_path / "c")


def test_local_store_opens_too(tmp_path: Path) -> None:
    store: BlobStore = LocalBlobStore(tmp_path)
    key, data = _key("clip.mp4"), secrets.token_bytes(300_000)
    store.put(key, data)
    assert store.path(key) == tmp_path / key
    blob = store.open(key)
    assert blob is not None and blob.size == len(data) and blob.read() == data
    store.delete(key)
    assert store.open(key) is None and store.path(key) is None
    assert store.open("../etc/passwd") is None
    assert store.open(secrets.token_hex(16)) is None


@pytest.mark.parametrize("kind", ["s3", "local"])
def test_byte_ranges_from_either_store(kind: str, s3_store: S3BlobStore, tmp_path: Path) -> None:
    """What a video player asks for when it seeks: bytes a-b, a to the end, the last n."""
    store: BlobStore = s3_store if kind == "s3" else LocalBlobStore(tmp_path / "local")
    key, data = _key("clip.mp4"), secrets.token_bytes(600_000)
    store.put(key, data)
    for header, first, last in (
        ("bytes=0-99", 0, 99),
        ("bytes=300000-", 300_000, len(data) - 1),
        ("bytes=-1000", len(data) - 1000, len(data) - 1),
        ("bytes=599990-700000", 599_990, len(data) - 1),  # clipped at the end
    ):
        blob = store.open(key, parse_range(header))
        assert blob is not None and blob.partial, header
        assert (blob.first, blob.size, blob.total) == (first, last - first + 1, len(data))
        assert blob.content_range() == f"bytes {first}-{last}/{len(data)}"
        assert blob.read() == data[first : last + 1], header
    with pytest.raises(RangeNotSatisfiable) as err:
        store.open(key, parse_range(f"bytes={len(data)}-"))
    assert err.value.size == len(data)
    whole = store.open(key, None)
    assert whole is not None and not whole.partial and whole.read() == data


def test_ranges_a_server_may_ignore_are_read_as_none() -> None:
    assert parse_range(None) is None
    for header in ("bytes=0-1,5-9", "bytes=5-1", "items=0-1", "bytes=-", "bytes=a-b", ""):
        assert parse_range(header) is None, header
    assert parse_range("bytes=10-") == (10, None)
    assert parse_range("bytes=-10") == (None, 10)


def test_huge_positions_parse_without_error() -> None:
    huge = "9" * 5000  # past int()'s digit limit
    assert parse_range(f"bytes={huge}-") == (2**62, None)  # past any end: a 416
    assert parse_range(f"bytes=0-{huge}") == (0, None)  # to the end
    assert parse_range(f"bytes=-{huge}") is None  # the whole file
    assert parse_range("bytes=\u0661-\u0662") is None
