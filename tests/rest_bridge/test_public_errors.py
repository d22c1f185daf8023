"""Clients read stable codes and public sentences; gRPC details and local paths go to the log.

A generation that fails on the way (its inference server killed mid-run, its deadline
passed) reports, in ``GET /api/v1/generations/{id}`` and in its events, the message of the
error the client was answered with, never the transport's text ("Stream removed",
"Socket closed", "Deadline Exceeded"); the bridge's log keeps that text beside the
generation's id. Validation messages written by our inference server pass, cleaned.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlmodel import Session, select

from rest_bridge.link.channels import public_details, rest_error
from storage.db import make_engine, migrate
from storage.models import Generation
from tests.conftest import Bridge, InferenceProc, bridge_env
from tests.utils.procs import start_bridge, start_inference
from tests.utils.sse import read_events

SLOW_MODEL = """
[models.nano-banana]
kind = "image"
source = "builtin:tiny-sdxl"
default = true
width = 256
height = 256
steps = 200
"""

TRANSPORT_TEXT = ("Stream removed", "Socket closed", "Deadline Exceeded", "Connection reset")
PUBLIC_MESSAGES = {
    "inference_unavailable": "The inference server is unavailable; try again shortly.",
    "inference_error": "The generation failed on the inference server.",
    "generation_timeout": "The generation did not finish in time.",
}


class _Refusal(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("details", "message"),
    [
        ("steps must be between 1 and 200", "steps must be between 1 and 200"),
        ("accepts aspect_ratio 1:1, 16:9; got '4/3'", "accepts aspect_ratio 1:1, 16:9; got '4/3'"),
        (
            "image cannot be decoded: cannot identify image file '/srv/genserve/tmp/in.png'",
            "image cannot be decoded: cannot identify image file '[path]'",
        ),
        ("cannot read C:\\models\\x.safetensors", "cannot read [path]"),
        ("failed at ./weights/m.bin and ~/cache/x", "failed at [path] and [path]"),
        ("too long\nTraceback (most recent call last):\n  File \"/a.py\"", "too long"),
        ('Traceback (most recent call last):\n  File "/usr/lib/x.py", line 1', None),
        ("/var/lib/genserve/models/x", None),
        ("", None),
    ],
)  # fmt: skip
def test_validation_details_reach_clients_cleaned(details: str, message: str | None) -> None:
    for code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
        err = rest_error(_Refusal(code, details), 5)
        assert (err.status, err.code) == (422, "validation_error")
        assert err.message == (message or "The request was refused.")
    assert len(public_details("x" * 5000)) <= 300


@pytest.mark.parametrize(
    ("code", "answer"),
    [
        (grpc.StatusCode.UNAVAILABLE, "inference_unavailable"),
        (grpc.StatusCode.INTERNAL, "inference_error"),
        (grpc.StatusCode.UNKNOWN, "inference_error"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "generation_timeout"),
    ],
)
def test_other_details_never_reach_clients(code: grpc.StatusCode, answer: str) -> None:
    err = rest_error(_Refusal(code, "generation failed: [Errno 2] /srv/x.py Socket closed"), 5)
    assert (err.code, err.message) == (answer, PUBLIC_MESSAGES[answer])


def _bridge(tmp: Path, logs: Path, target: str, **extra: str) -> Bridge:
    db_url = f"sqlite:///{tmp / 'genserve.db'}"
    proc, base = start_bridge(bridge_env(tmp, db_url, target, **extra), logs)
    engine = make_engine(db_url)
    migrate(engine)
    return Bridge(base=base, engine=engine, data_dir=tmp, proc=proc)


@pytest.fixture
def cleanup() -> Iterator[list[Any]]:
    """Processes and engines to stop after the test, whatever happens."""
    held: list[Any] = []
    yield held
    for thing in reversed(held):
        if isinstance(thing, Bridge):
            thing.proc.stop()
            thing.engine.dispose()
        else:
            thing.stop()


def _check_public(bridge: Bridge, key: str, generation_id: str, code: str) -> None:
    """The row's message, GET's and the events' final one: the public sentence of ``code``."""
    with Session(bridge.engine) as s:
        gen = s.get(Generation, generation_id)
        assert gen is not None and gen.status == "failed"
        assert (gen.error_code, gen.error_message) == (code, PUBLIC_MESSAGES[code])
    with bridge.client(key) as c:
        data = c.get(f"/api/v1/generations/{generation_id}").json()["data"]
        assert data["error"] == {"code": code, "message": PUBLIC_MESSAGES[code]}
        with c.stream("GET", f"/api/v1/generations/{generation_id}/events") as r:
            events = list(read_events(r))
    assert events[-1].name == "failed"
    assert events[-1].data["code"] == code
    assert events[-1].data["error"] == PUBLIC_MESSAGES[code]
    answers = str(data) + str([e.data for e in events])
    assert not any(text in answers for text in TRANSPORT_TEXT), answers


def _logged(bridge: Bridge, generation_id: str, status: str) -> str:
    """The bridge's log line that keeps the details of the generation's failure (a warning)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in bridge.proc.log_path.read_text(errors="replace").splitlines():
            if generation_id in line and status in line:
                if '"level"' in line:  # the JSON log format names the level
                    assert '"level": "WARNING"' in line, line
                return line
        time.sleep(0.1)
    raise AssertionError(bridge.proc.log())


def test_a_missed_deadline_reads_as_the_public_sentence(
    tmp_path: Path, logs: Path, inference: InferenceProc, cleanup: list[Any]
) -> None:
    bridge = _bridge(tmp_path, logs, inference.target, GENSERVE_IMAGE_TIMEOUT_S="0.001")
    cleanup.append(bridge)
    key = bridge.new_key(points=100)
    with bridge.client(key) as c:
        r = c.post("/api/v1/images", json={"prompt": "a"})
    assert r.status_code == 504, r.text
    assert r.json()["error"] == PUBLIC_MESSAGES["generation_timeout"]
    with Session(bridge.engine) as s:
        gen = s.exec(select(Generation)).one()
    _check_public(bridge, key, gen.id, "generation_timeout")
    assert "Deadline Exceeded" in _logged(bridge, gen.id, "DEADLINE_EXCEEDED")


@pytest.mark.server
def test_a_server_killed_mid_run_reads_as_the_public_sentence(
    tmp_path: Path, logs: Path, model_cache: Path, cleanup: list[Any]
) -> None:
    models = tmp_path / "slow.toml"
    models.write_text(SLOW_MODEL)
    server, port, _ = start_inference(model_cache, logs, models_file=models)
    cleanup.append(server)
    bridge = _bridge(tmp_path, logs, f"127.0.0.1:{port}", GENSERVE_CATALOGUE_REFRESH_S="60")
    cleanup.append(bridge)
    key = bridge.new_key(points=100)
    with bridge.client(key) as c:
        r = c.post("/api/v1/images", json={"prompt": "a"}, headers={"Prefer": "respond-async"})
        assert r.status_code == 202, r.text
        gid = r.json()["data"]["generation_id"]
        deadline = time.monotonic() + 120
        while c.get(f"/api/v1/generations/{gid}").json()["data"]["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        server.stop(signal.SIGKILL)
        deadline = time.monotonic() + 60
        while c.get(f"/api/v1/generations/{gid}").json()["data"]["status"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    with Session(bridge.engine) as s:
        gen = s.get(Generation, gid)
        assert gen is not None and gen.error_code is not None
        code = gen.error_code
    assert code in ("inference_unavailable", "inference_error"), code
    _check_public(bridge, key, gid, code)
    line = _logged(bridge, gid, "inference answered")
    assert any(text.lower() in line.lower() for text in ("socket", "stream", "connect")), line
