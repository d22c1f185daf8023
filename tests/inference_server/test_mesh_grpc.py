"""GenerateMesh over real gRPC: progress stages, GLB and preview chunks, status codes."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
import trimesh
from PIL import Image

from genserve.inference.v1 import inference_pb2 as pb
from genserve.inference.v1 import inference_pb2_grpc as pb_grpc
from tests.conftest import InferenceProc


@pytest.fixture()
def stub(inference: InferenceProc) -> pb_grpc.InferenceServiceStub:
    return pb_grpc.InferenceServiceStub(grpc.insecure_channel(inference.target))


def disc_png() -> bytes:
    yy, xx = np.mgrid[0:96, 0:96]
    inside = (xx - 48) ** 2 + (yy - 48) ** 2 < 30**2
    rgba = np.zeros((96, 96, 4), np.uint8)
    rgba[inside] = (200, 40, 40, 255)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("model", ["relief", "shap-e"])
def test_mesh_stream(stub: pb_grpc.InferenceServiceStub, model: str) -> None:
    events = list(
        stub.GenerateMesh(
            pb.GenerateMeshRequest(
                model=model,
                image=disc_png(),
                texture_quality=pb.TEXTURE_QUALITY_STANDARD,
                texture_alignment=pb.TEXTURE_ALIGNMENT_GEOMETRY,
                seed=3,
            )
        )
    )
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[-1] == "completion"
    stages = {e.progress.stage for e in events if e.WhichOneof("event") == "progress"}
    assert {pb.STAGE_DENOISING, pb.STAGE_ENCODING} <= stages
    chunks = [e.chunk for e in events if e.WhichOneof("event") == "chunk"]
    glb = b"".join(c.data for c in chunks if c.role == pb.ARTIFACT_ROLE_PRIMARY)
    preview = b"".join(c.data for c in chunks if c.role == pb.ARTIFACT_ROLE_PREVIEW)
    assert glb[:4] == b"glTF"
    scene = trimesh.load(io.BytesIO(glb), file_type="glb")
    assert len(scene.geometry) >= 1
    assert Image.open(io.BytesIO(preview)).size[0] > 0
    assert events[-1].completion.artifact_count == 1


@pytest.mark.parametrize(
    ("image", "code"),
    [
        (b"", grpc.StatusCode.INVALID_ARGUMENT),
        (b"not an image at all", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_mesh_bad_image(
    stub: pb_grpc.InferenceServiceStub, image: bytes, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        list(stub.GenerateMesh(pb.GenerateMeshRequest(image=image)))
    assert info.value.code() == code


def test_unknown_mesh_model(stub: pb_grpc.InferenceServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        list(stub.GenerateMesh(pb.GenerateMeshRequest(model="nope", image=disc_png())))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
