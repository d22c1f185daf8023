"""Live previews: a small JPEG of the latents every N denoising steps, only when asked."""

from __future__ import annotations

import io
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from PIL import Image

from genserve.inference.v1 import inference_pb2 as pb
from genserve.inference.v1 import inference_pb2_grpc as pb_grpc
from inference_server import previews
from tests.conftest import InferenceProc


@pytest.fixture()
def stub(inference: InferenceProc) -> pb_grpc.InferenceServiceStub:
    return pb_grpc.InferenceServiceStub(grpc.insecure_channel(inference.target))


def _previews(events: list[pb.Progress]) -> list[pb.Progress]:
    return [p for p in events if p.HasField("preview")]


def _jpeg(preview: pb.Preview) -> Image.Image:
    image = Image.open(io.BytesIO(preview.jpeg))
    image.load()
    assert image.format == "JPEG"
    assert image.size == (preview.width, preview.height)
    assert max(image.size) <= previews.MAX_SIDE
    return image


def test_image_previews_every_two_steps(stub: pb_grpc.InferenceServiceStub) -> None:
    request = pb.GenerateImageRequest(
        prompt="a red cube", num_images=1, seed=5, steps=4, preview_every=2, aspect_ratio="16:9"
    )
    progress = [e.progress for e in stub.GenerateImage(request) if e.HasField("progress")]
    sent = _previews(progress)
    assert [(p.step, p.total_steps) for p in sent] == [(2, 4), (4, 4)]
    assert all(p.stage == pb.STAGE_DENOISING for p in sent)
    for p in sent:
        image = _jpeg(p.preview)
        assert image.width == previews.MAX_SIDE and image.height < image.width  # 16:9


def test_no_previews_unless_asked(stub: pb_grpc.InferenceServiceStub) -> None:
    request = pb.GenerateImageRequest(prompt="a red cube", num_images=1, seed=5, steps=4)
    progress = [e.progress for e in stub.GenerateImage(request) if e.HasField("progress")]
    assert _previews(progress) == []


def test_negative_preview_every_is_refused(stub: pb_grpc.InferenceServiceStub) -> None:
    request = pb.GenerateImageRequest(prompt="a cube", num_images=1, preview_every=-1)
    with pytest.raises(grpc.RpcError) as info:
        list(stub.GenerateImage(request))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_video_previews(stub: pb_grpc.InferenceServiceStub) -> None:
    request = pb.GenerateVideoRequest(
        prompt="a red cube",
        resolution="360p",
        aspect_ratio="16:9",
        duration_seconds=1,
        steps=3,
        seed=3,
        preview_every=1,
    )
    progress = [e.progress for e in stub.GenerateVideo(request) if e.HasField("progress")]
    sent = _previews(progress)
    assert [p.step for p in sent] == [1, 2, 3]
    for p in sent:
        image = _jpeg(p.preview)
        assert image.width == previews.MAX_SIDE and image.height < image.width


def test_projection_per_family() -> None:
    """SDXL's table, LTX's fixed map, and the fallback all give [H, W, 3] in [0, 1]."""
    for family, channels in (("sdxl", 4), ("ltx", 128), ("generic", 16), ("sdxl", 2)):
        rgb = previews.latents_to_rgb(torch.randn(channels, 8, 6), family)
        assert rgb.shape == (8, 6, 3)
        assert 0 <= float(rgb.min()) and float(rgb.max()) <= 1


def _red_decoder(folder: Path) -> Path:
    """A tiny AutoencoderTiny whose every output pixel is pure red, saved as a folder."""
    from diffusers import AutoencoderTiny

    decoder = AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=4,
    )
    last = [m for m in decoder.decoder.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([1.0, 0.0, 0.0]))
    decoder.save_pretrained(folder)
    return folder


def test_a_configured_tiny_decoder_draws_the_previews(model_cache: Path, tmp_path: Path) -> None:
    """``preview_decoder`` loads through from_pretrained and replaces the projection."""
    from inference_server.loader import load_pipeline
    from inference_server.model_config import ModelSpec
    from inference_server.pipelines.image import ImageRun, run_image

    folder = _red_decoder(tmp_path / "taesd-red")
    sent: list[previews.Preview] = []
    for decoder in (str(folder), None):
        spec = ModelSpec(
            name="tiny",
            kind="image",
            source="builtin:tiny-sdxl",
            width=64,
            height=64,
            steps=2,
            preview_decoder=decoder,
        )
        pipe = load_pipeline(spec, model_cache)
        run = ImageRun(
            prompt="a cube", negative_prompt="", width=64, height=64, num_images=1,
            steps=2, guidance=5.0, seed=1,
        )  # fmt: skip
        run_image(pipe, run, lambda *_: None, 2, lambda _s, _t, p: sent.append(p))
    decoded, projected = (Image.open(io.BytesIO(p.jpeg)).convert("RGB") for p in sent)
    r, g, b = np.asarray(decoded).reshape(-1, 3).mean(axis=0)
    assert r > 240 and g < 15 and b < 15  # what the decoder drew, not the latents' colours
    r2, g2, b2 = np.asarray(projected).reshape(-1, 3).mean(axis=0)
    assert not (r2 > 240 and g2 < 15 and b2 < 15)
