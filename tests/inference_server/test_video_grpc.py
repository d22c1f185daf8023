"""GenerateVideo over real gRPC, and the video plan's checks and memory options."""

from __future__ import annotations

import io
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from genserve.inference.v1 import inference_pb2 as pb
from genserve.inference.v1 import inference_pb2_grpc as pb_grpc
from inference_server.encoders.video import probe_mp4
from inference_server.errors import InvalidArgument
from inference_server.model_config import ModelTable, load_model_table
from inference_server.plans.video import plan_video
from inference_server.registry import ModelRegistry
from tests.conftest import InferenceProc
from tests.utils.mp4 import decoded_frame_sizes, mp4_box_order

EMBEDDED = load_model_table(None)


@pytest.fixture()
def stub(inference: InferenceProc) -> pb_grpc.InferenceServiceStub:
    return pb_grpc.InferenceServiceStub(grpc.insecure_channel(inference.target))


def test_list_video_models(stub: pb_grpc.InferenceServiceStub) -> None:
    models = stub.ListModels(pb.ListModelsRequest(kind=pb.MODEL_KIND_VIDEO)).models
    by_name = {m.name: m for m in models}
    assert set(by_name) == {"vidu-q2", "ltx-2"}
    assert by_name["vidu-q2"].is_default and not by_name["ltx-2"].is_default
    assert by_name["vidu-q2"].source == "builtin:tiny-ltx-video"
    assert by_name["ltx-2"].source == "builtin:tiny-ltx2"
    for m in models:
        assert m.loaded and m.size_factor == 32
        assert (m.min_duration_seconds, m.max_duration_seconds) == (1, 10)


def test_video_stream_reports_every_stage(stub: pb_grpc.InferenceServiceStub) -> None:
    request = pb.GenerateVideoRequest(
        prompt="a red cube", resolution="360p", aspect_ratio="1:1", duration_seconds=1, seed=11
    )
    events = list(stub.GenerateVideo(request))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[-1] == "completion"
    # All progress comes before the first chunk: files are sent once fully encoded.
    assert "progress" not in kinds[kinds.index("chunk") :]
    progress = [e.progress for e in events if e.WhichOneof("event") == "progress"]
    by_stage = {
        stage: [(p.step, p.total_steps) for p in progress if p.stage == stage]
        for stage in (pb.STAGE_QUEUED, pb.STAGE_DENOISING, pb.STAGE_DECODING, pb.STAGE_ENCODING)
    }
    assert by_stage[pb.STAGE_QUEUED]
    assert by_stage[pb.STAGE_DENOISING] == [(1, 2), (2, 2)]
    assert by_stage[pb.STAGE_DECODING] == [(0, 1), (1, 1)]
    encoding = by_stage[pb.STAGE_ENCODING]
    assert [step for step, _ in encoding] == list(range(1, len(encoding) + 1))
    assert encoding[-1][0] == encoding[-1][1]
    stages = [p.stage for p in progress if p.stage != pb.STAGE_QUEUED]
    assert stages == sorted(stages), "denoising, then decoding, then encoding"

    chunks = [e.chunk for e in events if e.WhichOneof("event") == "chunk"]
    primary = b"".join(c.data for c in chunks if c.role == pb.ARTIFACT_ROLE_PRIMARY)
    poster = b"".join(c.data for c in chunks if c.role == pb.ARTIFACT_ROLE_PREVIEW)
    meta = next(c for c in chunks if c.role == pb.ARTIFACT_ROLE_PRIMARY)
    assert meta.content_type == "video/mp4" and meta.total_size == len(primary)
    assert (meta.width, meta.height) == (360, 360)  # generated at 384x384, cropped
    assert (meta.frame_count, meta.frame_rate, meta.duration_seconds) == (8, 8.0, 1.0)
    order = mp4_box_order(primary)
    assert order.index("moov") < order.index("mdat")
    facts = probe_mp4(primary)
    assert (facts.width, facts.height, facts.frame_count) == (meta.width, meta.height, 8)
    assert decoded_frame_sizes(primary) == [(meta.width, meta.height)] * meta.frame_count
    image = Image.open(io.BytesIO(poster))
    assert image.format == "JPEG" and image.size == (360, 360)
    completion = events[-1].completion
    assert completion.seed == 11 and completion.artifact_count == 1


@pytest.mark.parametrize(
    ("request_kwargs", "code"),
    [
        ({"prompt": "a", "duration_seconds": 11}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"prompt": "a", "duration_seconds": -1}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"prompt": "a", "resolution": "480p"}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"prompt": "a", "aspect_ratio": "21:9"}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"prompt": " ", "resolution": "360p"}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"prompt": "a", "model": "nano-banana"}, grpc.StatusCode.NOT_FOUND),
    ],
)
def test_refusals(
    stub: pb_grpc.InferenceServiceStub, request_kwargs: dict[str, object], code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        list(stub.GenerateVideo(pb.GenerateVideoRequest(**request_kwargs)))  # type: ignore[arg-type]
    assert info.value.code() == code


def test_plan_resolves_the_defaults() -> None:
    spec = EMBEDDED.get("vidu-q2", "video")
    assert spec is not None
    plan = plan_video(spec, pb.GenerateVideoRequest(prompt="a"))
    assert (plan.run.width, plan.run.height) == (1280, 736)  # the model's multiple of 32
    assert (plan.width, plan.height) == (1280, 720)  # what 720p 16:9 means: the output
    assert plan.run.num_frames == 33 and plan.encoded_frames == 32  # 4 s at 8 fps
    assert plan.run.steps == spec.steps and plan.run.guidance == spec.guidance
    with pytest.raises(InvalidArgument):
        plan_video(spec, pb.GenerateVideoRequest(prompt="a", duration_seconds=11))


@pytest.mark.parametrize("name", ["vidu-q2", "ltx-2"])
def test_vae_tiling_option_reaches_the_vae(model_cache: Path, name: str) -> None:
    """LTX pipelines have no enable_vae_tiling of their own: the loader tiles their VAE."""
    table = ModelTable(models=[s.model_copy(update={"vae_tiling": True}) for s in EMBEDDED.models])
    registry = ModelRegistry(table, model_cache, queue_size=1)
    spec = registry.spec(name, "video")
    plan = plan_video(
        spec,
        pb.GenerateVideoRequest(prompt="a", resolution="360p", duration_seconds=1, seed=3),
    )
    result = plan.work(registry)(lambda step, total, stage: None)
    assert registry.pipeline(spec).vae.use_tiling
    assert result.frames.shape == (9, 384, 640, 3)
    assert np.isfinite(result.frames).all() and result.frames.std() > 0
    artifacts = plan.encode(result, lambda step, total, stage: None)
    assert result.frames.size == 0, "the encoder released the raw frames"
    assert [a.frame_count for a in artifacts] == [8, 0]
