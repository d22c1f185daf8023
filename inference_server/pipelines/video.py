"""Runs an LTX-Video, LTX-2 or Wan 2.1 pipeline and returns frames ready to encode.

The three pipelines share their call signature for the parts genserve uses;
LTX-2 adds audio and its own guidance knobs, Wan has no frame rate argument and
its own size rules (sides in multiples of 16, ``4k+1`` frames). Keeping the
differences here lets the video plan treat every video model the same way.

A first frame goes to the family's image-to-video pipeline: LTX-Video's and
LTX-2's are made with ``from_pipe`` on the loaded text-to-video weights; Wan's
image-to-video checkpoint is loaded as one (``WanImageToVideoPipeline``, its own
weights) and makes nothing without a frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import (
    DiffusionPipeline,
    LTX2Pipeline,
    LTXPipeline,
    WanImageToVideoPipeline,
    WanPipeline,
)
from PIL import Image

from inference_server.errors import InvalidArgument
from inference_server.previews import PreviewSink, due, video_preview
from inference_server.progress import StepCallback

# Prompts past this many tokens are truncated; the public limit is 4,000 characters,
# and LTX was trained with 128 (LTX-Video) to 1024 (LTX-2) tokens, Wan with 512.
LTX_VIDEO_MAX_TOKENS = 128
LTX2_MAX_TOKENS = 256
WAN_MAX_TOKENS = 512
MAX_TOKENS = {"ltx": LTX_VIDEO_MAX_TOKENS, "ltx2": LTX2_MAX_TOKENS, "wan": WAN_MAX_TOKENS}


@dataclass
class VideoResult:
    """Decoded frames and, for models that make sound, the audio track."""

    frames: np.ndarray  # uint8 [T, H, W, 3]
    fps: float
    audio: np.ndarray | None  # float32 [channels, samples], in [-1, 1]
    sample_rate: int | None


def video_family(pipe: DiffusionPipeline) -> str:
    """``ltx``, ``ltx2`` or ``wan``: which call and size rules the pipeline follows."""
    if isinstance(pipe, LTX2Pipeline):
        return "ltx2"
    if isinstance(pipe, LTXPipeline):
        return "ltx"
    if isinstance(pipe, WanPipeline | WanImageToVideoPipeline):
        return "wan"
    raise InvalidArgument(f"{type(pipe).__name__} is not a supported video pipeline")


def needs_first_frame(pipe: DiffusionPipeline) -> bool:
    """Whether the loaded pipeline makes video only from a first frame (Wan's image to video)."""
    return isinstance(pipe, WanImageToVideoPipeline)


def size_rules(pipe: DiffusionPipeline) -> tuple[int, int]:
    """``(spatial, temporal)``: sides must be multiples of the first, frames ``temporal*k+1``.

    LTX patches nothing beyond its VAE (32x, 8x); Wan's transformer takes 2x2
    patches of its VAE's latents (8x, 4x), so its sides are multiples of 16.
    """
    if video_family(pipe) == "wan":
        patch = int(pipe.transformer.config.patch_size[1])
        return int(pipe.vae_scale_factor_spatial) * patch, int(pipe.vae_scale_factor_temporal)
    return int(pipe.vae_spatial_compression_ratio), int(pipe.vae_temporal_compression_ratio)


def _to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """[1, T, C, H, W] floats in [0, 1] to uint8 [T, H, W, C], converted on the device.

    Converting before the copy to host moves a quarter of the bytes.
    """
    frames = video[0].mul_(255).round_().clamp_(0, 255).to(torch.uint8)
    return np.ascontiguousarray(frames.permute(0, 2, 3, 1).cpu().numpy())


def _check_shape(pipe: DiffusionPipeline, width: int, height: int, num_frames: int) -> None:
    """Refuse sizes the model cannot make before any work (it would raise, crop or drop frames)."""
    spatial, temporal = size_rules(pipe)
    if width <= 0 or height <= 0 or width % spatial or height % spatial:
        raise InvalidArgument(
            f"width and height must be multiples of {spatial}; got {width}x{height}"
        )
    if num_frames < 1 or (num_frames - 1) % temporal:
        raise InvalidArgument(f"num_frames must be {temporal}k+1; got {num_frames}")


def _min_steps(pipe: DiffusionPipeline) -> int:
    """Two steps where the scheduler stretches sigmas to a terminal value.

    With one step the stretch divides by zero and the whole clip becomes NaN.
    """
    return 2 if pipe.scheduler.config.get("shift_terminal") else 1


def _ltx2_kwargs(pipe: LTX2Pipeline) -> dict[str, Any]:
    """Spatio-temporal guidance on the last block the transformer really has.

    The pipeline's default (block 28) only exists in the full-size model.
    """
    last_block = len(pipe.transformer.transformer_blocks) - 1
    return {"spatio_temporal_guidance_blocks": [min(28, last_block)]}


def image_to_video(pipe: DiffusionPipeline, family: str) -> DiffusionPipeline:
    """The family's image-to-video pipeline on the loaded weights (``from_pipe``), made once
    and kept on the pipeline, never a second copy of the weights; a pipeline that is one
    already (Wan's) is itself."""
    if needs_first_frame(pipe):
        return pipe
    variants: dict[str, Any] = pipe.__dict__.setdefault("_genserve_variants", {})
    if "image_to_video" not in variants:
        import diffusers

        names = {"ltx": "LTXImageToVideoPipeline", "ltx2": "LTX2ImageToVideoPipeline"}
        cls = getattr(diffusers, names.get(family, ""), None)
        if cls is None:
            raise InvalidArgument(f"{type(pipe).__name__} has no image-to-video pipeline")
        variant = cls.from_pipe(pipe)
        variant.set_progress_bar_config(disable=True)
        for name in ("genserve_preview_decoder",):
            if hasattr(pipe, name):
                setattr(variant, name, getattr(pipe, name))
        variants["image_to_video"] = variant
    return variants["image_to_video"]


def run_video(
    pipe: DiffusionPipeline,
    *,
    prompt: str,
    negative_prompt: str,
    width: int,
    height: int,
    num_frames: int,
    frame_rate: float,
    steps: int,
    guidance: float,
    seed: int,
    on_step: StepCallback,
    preview_every: int = 0,
    on_preview: PreviewSink | None = None,
    first_frame: Image.Image | None = None,
) -> VideoResult:
    """Generate one clip, reporting each denoising step and the decode.

    ``on_step`` runs inside the denoising loop, so a ``GenerationCancelled`` it
    raises stops the pipeline at that step and propagates to the caller.
    Decoding is reported as ``(0, 1)`` when it starts and ``(1, 1)`` when done.
    Every ``preview_every`` steps the middle frame's latents go to ``on_preview``.
    """
    family = video_family(pipe)
    _check_shape(pipe, width, height, num_frames)
    if first_frame is None and needs_first_frame(pipe):
        raise InvalidArgument(f"{type(pipe).__name__} needs a first frame (init_image)")
    if steps < _min_steps(pipe):
        raise InvalidArgument(f"this model needs at least {_min_steps(pipe)} steps; got {steps}")

    def on_step_end(
        pipeline: DiffusionPipeline, index: int, timestep: torch.Tensor, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        total = int(pipeline.num_timesteps)
        on_step(index + 1, total, "denoising")
        if on_preview is not None and due(index + 1, preview_every, total):
            preview = video_preview(pipeline, tensors["latents"], num_frames, (width, height))
            on_preview(index + 1, total, preview)
        if index + 1 == total:
            on_step(0, 1, "decoding")
        return tensors

    generator = torch.Generator(device=pipe.device).manual_seed(seed)
    kwargs: dict[str, Any] = {
        "prompt": prompt,
        "negative_prompt": negative_prompt,
        "width": width,
        "height": height,
        "num_frames": num_frames,
        "num_inference_steps": steps,
        "guidance_scale": guidance,
        "generator": generator,
        "output_type": "pt",
        "callback_on_step_end": on_step_end,
        "max_sequence_length": MAX_TOKENS[family],
    }
    if family != "wan":  # Wan's frame rate is fixed by its training (16 fps): no argument
        kwargs["frame_rate"] = frame_rate
    if family == "ltx2":
        kwargs.update(_ltx2_kwargs(pipe))
    if first_frame is not None:
        pipe = image_to_video(pipe, family)
        kwargs["image"] = first_frame
    with torch.inference_mode():
        output = pipe(**kwargs)
        frames = _to_uint8_frames(output.frames)
        audio: np.ndarray | None = None
        sample_rate: int | None = None
        if family == "ltx2":
            audio = output.audio[0].float().clamp(-1, 1).cpu().numpy()
            sample_rate = int(pipe.vocoder.config.output_sampling_rate)
    on_step(1, 1, "decoding")
    return VideoResult(frames=frames, fps=frame_rate, audio=audio, sample_rate=sample_rate)
