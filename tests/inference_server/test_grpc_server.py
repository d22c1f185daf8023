"""The inference server over real gRPC: health, models, streams, status codes."""

from __future__ import annotations

import io
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from genserve.inference.v1 import inference_pb2 as pb
from genserve.inference.v1 import inference_pb2_grpc as pb_grpc
from tests.conftest import InferenceProc
from tests.utils.procs import start_inference


@pytest.fixture()
def stub(inference: InferenceProc) -> pb_grpc.InferenceServiceStub:
    return pb_grpc.InferenceServiceStub(grpc.insecure_channel(inference.target))


def test_health_and_no_reflection_unless_asked(inference: InferenceProc) -> None:
    """Reflection is served only with GENSERVE_INFERENCE_REFLECTION=true
    (tests/inference_server/test_transport_security.py)."""
    with grpc.insecure_channel(inference.target) as ch:
        status = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="genserve.inference.v1.InferenceService")
        )
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        replies = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        with pytest.raises(grpc.RpcError) as err:
            list(replies)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]


def test_list_models(stub: pb_grpc.InferenceServiceStub) -> None:
    models = stub.ListModels(pb.ListModelsRequest(kind=pb.MODEL_KIND_IMAGE)).models
    assert [m.name for m in models] == ["nano-banana"]
    assert models[0].is_default and models[0].loaded
    assert models[0].source == "builtin:tiny-sdxl"


def test_image_stream(stub: pb_grpc.InferenceServiceStub) -> None:
    events = list(
        stub.GenerateImage(
            pb.GenerateImageRequest(
                prompt="a red cube",
                num_images=2,
                aspect_ratio="16:9",
                format=pb.IMAGE_FORMAT_PNG,
                seed=7,
            )
        )
    )
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[-1] == "completion"
    denoise = [
        e.progress
        for e in events
        if kinds and e.WhichOneof("event") == "progress" and e.progress.stage == pb.STAGE_DENOISING
    ]
    assert [p.step for p in denoise] == [1, 2, 3, 4]
    assert all(p.total_steps == 4 for p in denoise)
    chunks = [e.chunk for e in events if e.WhichOneof("event") == "chunk"]
    primaries = [c for c in chunks if c.role == pb.ARTIFACT_ROLE_PRIMARY]
    assert sorted(c.index for c in primaries) == [0, 1]
    for c in chunks:
        assert len(c.data) <= 1024 * 1024
    for c in primaries:
        img = Image.open(io.BytesIO(c.data))
        assert img.format == "PNG" and img.size == (c.width, c.height)
        assert c.total_size == len(c.data)
    completion = events[-1].completion
    assert completion.seed == 7 and completion.artifact_count == 2
    assert completion.timings.total_seconds >= completion.timings.inference_seconds > 0


def test_same_seed_same_image(stub: pb_grpc.InferenceServiceStub) -> None:
    def once() -> bytes:
        req = pb.GenerateImageRequest(prompt="same", num_images=1, seed=123)
        return b"".join(
            e.chunk.data
            for e in stub.GenerateImage(req)
            if e.WhichOneof("event") == "chunk" and e.chunk.role == pb.ARTIFACT_ROLE_PRIMARY
        )

    assert once() == once()


@pytest.mark.parametrize(
    ("request_kwargs", "code"),
    [
        ({"prompt": "", "num_images": 1}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"prompt": "a", "num_images": 0}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"prompt": "a", "num_images": 1, "aspect_ratio": "2:1"}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"prompt": "a", "num_images": 1, "model": "missing"}, grpc.StatusCode.NOT_FOUND),
    ],
)
def test_error_status_codes(
    stub: pb_grpc.InferenceServiceStub, request_kwargs: dict[str, object], code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        list(stub.GenerateImage(pb.GenerateImageRequest(**request_kwargs)))  # type: ignore[arg-type]
    assert info.value.code() == code


@pytest.mark.server
def test_sigterm_drains_running_work(model_cache: Path, logs: Path, tmp_path: Path) -> None:
    models = tmp_path / "models.toml"
    models.write_text(
        '[models.nano-banana]\nkind = "image"\nsource = "builtin:tiny-sdxl"\n'
        "width = 64\nheight = 64\nsteps = 12\n"
    )
    proc, port, _ = start_inference(
        model_cache, logs, models_file=models, extra_env={"GENSERVE_INFERENCE_GRACE_SECONDS": "120"}
    )
    try:
        ch = grpc.insecure_channel(f"127.0.0.1:{port}")
        stream = pb_grpc.InferenceServiceStub(ch).GenerateImage(
            pb.GenerateImageRequest(prompt="slow", num_images=1)
        )
        first = next(stream)
        assert first.WhichOneof("event") == "progress"
        stopper = threading.Thread(target=proc.popen.send_signal, args=(signal.SIGTERM,))
        stopper.start()
        rest = list(stream)
        stopper.join()
        assert rest[-1].WhichOneof("event") == "completion"
        deadline = time.monotonic() + 30
        while proc.popen.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.popen.returncode == 0
    finally:
        proc.stop()
