"""Output files on both stores: ranges, HEAD, outages, and no capability token in the logs.

Real bridges with a real local folder or a real (moto) bucket; an outage is the bucket's
server stopped, or the local folder replaced by a file (tests run as root, where a
read-only folder would still be written).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from storage.models import Generation
from tests.conftest import Bridge, InferenceProc, bridge_env
from tests.utils.procs import start_bridge
from tests.utils.s3 import MotoS3, start_moto

pytestmark = pytest.mark.server

BUCKET = "genserve-failures"
BODY = {"prompt": "A lighthouse at dawn", "output_format": "png"}


@pytest.fixture(scope="module")
def moto(logs: Path) -> Iterator[MotoS3]:
    for server in start_moto(logs):
        server.create_bucket(BUCKET)
        yield server


def _bridge(tmp_path: Path, logs: Path, inference: InferenceProc, **extra: str) -> Iterator[Bridge]:
    from storage.db import make_engine, migrate

    db_url = f"sqlite:///{tmp_path / 'genserve.db'}"
    proc, base = start_bridge(bridge_env(tmp_path, db_url, inference.target, **extra), logs)
    engine = make_engine(db_url)
    migrate(engine)
    yield Bridge(base=base, engine=engine, data_dir=tmp_path, proc=proc)
    proc.stop()
    engine.dispose()


@pytest.fixture(scope="module", params=["local", "s3"])
def any_store(
    request: pytest.FixtureRequest,
    inference: InferenceProc,
    tmp_path_factory: pytest.TempPathFactory,
    logs: Path,
) -> Iterator[Bridge]:
    extra = {}
    if request.param == "s3":
        moto: MotoS3 = request.getfixturevalue("moto")
        extra = {"GENSERVE_BLOB_URL": f"s3://{BUCKET}/served", **moto.env}
    yield from _bridge(tmp_path_factory.mktemp(f"files-{request.param}"), logs, inference, **extra)


def _generate(bridge: Bridge, key: str) -> httpx.Response:
    with bridge.client(key) as c:
        return c.post("/api/v1/images", json=BODY)


@pytest.fixture(scope="module")
def file_url(any_store: Bridge) -> str:
    r = _generate(any_store, any_store.new_key(points=100))
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["images"][0]["url"])


def test_ranges_are_a_206_the_whole_file_or_a_416_in_the_envelope(
    any_store: Bridge, file_url: str
) -> None:
    whole = httpx.get(file_url)
    assert whole.status_code == 200
    data, size = whole.content, len(whole.content)
    part = httpx.get(file_url, headers={"Range": "bytes=0-9"})
    assert (part.status_code, part.content) == (206, data[:10])
    assert part.headers["content-range"] == f"bytes 0-9/{size}"
    huge = "9" * 5000
    for header in (
        f"bytes=0-{huge}",  # to the end
        f"bytes=-{huge}",  # the last "huge" bytes: all of them
        "bytes=abc",
        "bytes=5-1",
        "bytes=0-1,5-9",
        "bytes=\u0661-\u0662".encode(),  # digits only in Unicode's sense
        "pages=1-2",
    ):
        r = httpx.get(file_url, headers={"Range": header})
        assert r.status_code in (200, 206), (header, r.status_code, r.text[:200])
        if r.status_code == 200:
            assert r.content == data, header
        else:
            assert r.content == data[int(r.headers["content-range"].split()[1].split("-")[0]) :]
    for header in (
        f"bytes={huge}-",
        f"bytes={size}-",
        f"bytes={10**19}-{10**19 + 5}",
        "bytes=" + "1" * 20 + "-",
    ):
        r = httpx.get(file_url, headers={"Range": header})
        assert r.status_code == 416, (header, r.status_code, r.text[:200])
        assert r.headers["content-range"] == f"bytes */{size}"
        assert r.json()["code"] == "range_not_satisfiable"


def test_head_answers_like_get_without_the_body(any_store: Bridge, file_url: str) -> None:
    for headers in ({}, {"Range": "bytes=2-5"}):
        got = httpx.get(file_url, headers=headers)
        head = httpx.head(file_url, headers=headers)
        assert head.status_code == got.status_code, headers
        assert head.content == b""
        for name in ("content-length", "content-type", "accept-ranges", "cache-control"):
            assert head.headers[name] == got.headers[name], (name, headers)
        assert head.headers.get("content-range") == got.headers.get("content-range")
    missing = file_url.rsplit("/", 2)[0] + "/" + "0" * 32 + "/nothing.png"
    assert httpx.head(missing).status_code == 404


def test_capability_tokens_stay_out_of_the_log(any_store: Bridge, file_url: str) -> None:
    token = file_url.rsplit("/", 2)[1]
    for header in ("bytes=" + "9" * 5000 + "-", "bytes=0-1"):
        httpx.get(file_url, headers={"Range": header})
    httpx.head(file_url)
    assert token not in any_store.proc.log()


def _rows(bridge: Bridge) -> list[Generation]:
    with Session(bridge.engine) as s:
        return list(s.exec(select(Generation)).all())


def _assert_outage_answers(bridge: Bridge, stored_url: str) -> None:
    """A generation is a 503 storage_error, ended and refunded at once; a download a 503."""
    key = bridge.new_key(points=100)
    before = {g.id for g in _rows(bridge)}
    r = _generate(bridge, key)
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "storage_error"
    assert int(r.headers["retry-after"]) > 0
    new = [g for g in _rows(bridge) if g.id not in before]
    assert len(new) == 1 and new[0].status == "failed", new
    assert new[0].error_code == "storage_error"
    with bridge.client(key) as c:
        assert c.get("/api/v1/account").json()["data"]["points"] == 100  # refunded already
    for method in ("GET", "HEAD"):
        down = httpx.request(method, stored_url)
        assert down.status_code == 503, (method, down.status_code)
        assert int(down.headers["retry-after"]) > 0
        if method == "GET":
            assert down.json()["code"] == "storage_error"
    assert "Traceback" not in bridge.proc.log()


def test_an_unwritable_local_folder_is_a_503_refunded_at_once(
    inference: InferenceProc, tmp_path: Path, logs: Path
) -> None:
    for bridge in _bridge(tmp_path, logs, inference):
        ok = _generate(bridge, bridge.new_key())
        assert ok.status_code == 200, ok.text
        stored_url = ok.json()["data"]["images"][0]["url"]
        blobs = tmp_path / "blobs"
        shutil.move(blobs, tmp_path / "blobs-away")
        blobs.write_text("not a folder")  # the volume is gone
        _assert_outage_answers(bridge, stored_url)
        blobs.unlink()
        shutil.move(tmp_path / "blobs-away", blobs)
        assert httpx.get(stored_url).status_code == 200


def test_a_stopped_bucket_is_a_503_refunded_at_once(
    inference: InferenceProc, tmp_path: Path, logs: Path
) -> None:
    for moto in start_moto(logs):
        moto.create_bucket(BUCKET)
        extra = {"GENSERVE_BLOB_URL": f"s3://{BUCKET}/outage", **moto.env}
        for bridge in _bridge(tmp_path, logs, inference, **extra):
            ok = _generate(bridge, bridge.new_key())
            assert ok.status_code == 200, ok.text
            stored_url = ok.json()["data"]["images"][0]["url"]
            moto.proc.stop()
            _assert_outage_answers(bridge, stored_url)
