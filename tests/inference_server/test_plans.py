"""The plans are where the inference server checks a request, once, against the model's entry.

What runs after them (geometry, pipelines, encoders) trusts what they accepted, so
every refusal is tested here, without a device or a server.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from genserve import vocabulary as vocab
from genserve.inference.v1 import inference_pb2 as pb
from inference_server.errors import InvalidArgument
from inference_server.model_config import ModelSpec, load_model_table
from inference_server.plans.image import plan_image
from inference_server.plans.mesh import plan_mesh
from inference_server.plans.video import plan_video
from inference_server.servicer import KIND_INFO, model_info

EMBEDDED = load_model_table(None)


def spec(name: str, kind: vocab.Kind, **update: object) -> ModelSpec:
    found = EMBEDDED.get(name, kind)
    assert found is not None
    return found.model_copy(update=update)


def test_an_unset_duration_is_the_models_default() -> None:
    """``duration_seconds`` 0 means the model's ``default_duration``, not a fixed number."""
    short = spec("vidu-q2", "video", default_duration=2)
    plan = plan_video(short, pb.GenerateVideoRequest(prompt="a", resolution="360p"))
    assert plan.encoded_frames == 16  # 2 s at 8 fps
    assert plan.run.num_frames == 17  # the model's 8k+1 covering them
    named = plan_video(
        short, pb.GenerateVideoRequest(prompt="a", resolution="360p", duration_seconds=3)
    )
    assert named.encoded_frames == 24


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"resolution": "480p"},
        {"aspect_ratio": "21:9"},  # an image ratio, not a video one
        {"aspect_ratio": "7:3"},
        {"duration_seconds": 11},
        {"duration_seconds": -1},
    ],
)
def test_video_refusals(request_kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        plan_video(spec("vidu-q2", "video"), pb.GenerateVideoRequest(prompt="a", **request_kwargs))  # type: ignore[arg-type]


def test_a_model_file_narrows_what_its_plan_accepts() -> None:
    narrow = spec("vidu-q2", "video", resolutions=["360p"], aspect_ratios=["1:1"])
    plan_video(narrow, pb.GenerateVideoRequest(prompt="a", resolution="360p", aspect_ratio="1:1"))
    for kwargs in ({"resolution": "720p"}, {"resolution": "360p", "aspect_ratio": "16:9"}):
        with pytest.raises(InvalidArgument):
            plan_video(narrow, pb.GenerateVideoRequest(prompt="a", **kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"aspect_ratio": "2:1"},
        {"num_images": 0},
        {"num_images": 5},
        {"format": 9},
    ],
)
def test_image_refusals(request_kwargs: dict[str, object]) -> None:
    request = pb.GenerateImageRequest(prompt="a", num_images=1)
    for key, value in request_kwargs.items():
        setattr(request, key, value)
    with pytest.raises(InvalidArgument):
        plan_image(spec("nano-banana", "image"), request)


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"texture_quality": 9},
        {"texture_alignment": 9},
        {"orientation": 9},
    ],
)
def test_mesh_refusals(request_kwargs: dict[str, int]) -> None:
    request = pb.GenerateMeshRequest(image=_png())
    for key, value in request_kwargs.items():
        setattr(request, key, value)
    with pytest.raises(InvalidArgument):
        plan_mesh(spec("relief", "3d"), request)


def test_mesh_options_default_and_narrow() -> None:
    plan = plan_mesh(spec("relief", "3d"), pb.GenerateMeshRequest(image=_png()))
    assert (plan.texture_quality, plan.texture_alignment, plan.orientation) == (
        "standard",
        "original_image",
        "default",
    )
    narrow = spec("relief", "3d", orientations=["default"])
    with pytest.raises(InvalidArgument):
        plan_mesh(
            narrow, pb.GenerateMeshRequest(image=_png(), orientation=pb.ORIENTATION_ALIGN_IMAGE)
        )


def test_every_kind_has_a_listing_and_an_unknown_one_fails_loudly() -> None:
    assert set(KIND_INFO) == set(vocab.KINDS)
    video = model_info(spec("vidu-q2", "video", default_duration=2), True, False)
    assert video.default_duration_seconds == 2 and not video.texture_qualities
    mesh = model_info(spec("relief", "3d"), True, False)
    assert list(mesh.orientations) and not mesh.aspect_ratios and not mesh.default_duration_seconds
    with pytest.raises(KeyError):
        model_info(spec("relief", "3d").model_copy(update={"kind": "audio"}), True, False)
