"""Text to video: the plan of one GenerateVideo request.

Everything the request can get wrong (model range, resolution, aspect ratio,
prompt, steps) is checked here, before anything is queued; the frame counts
come from ``video_geometry`` so the bridge prices the same clip the server makes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from genserve import vocabulary as vocab
from genserve.inference.v1 import inference_pb2 as pb
from inference_server.artifacts import Artifact
from inference_server.encoders.images import CONTENT_TYPES, encode_image
from inference_server.encoders.video import encode_mp4, poster_frame, probe_mp4
from inference_server.errors import InvalidArgument
from inference_server.model_config import ModelSpec
from inference_server.pipelines.step_cache import StepCache, cached_steps
from inference_server.pipelines.video import VideoResult, run_video
from inference_server.plans.common import (
    accepted,
    decode_input_image,
    guidance_for,
    negative_text,
    preview_every,
    prompt_text,
    random_seed,
    step_cache_for,
    steps_for,
)
from inference_server.previews import PreviewSink
from inference_server.progress import StepCallback
from inference_server.registry import ModelRegistry
from inference_server.video_geometry import (
    centre_crop,
    encoded_frame_count,
    frame_count,
    output_size,
    video_size,
)

POSTER_FORMAT = "jpeg"


@dataclass(frozen=True)
class VideoRun:
    """One call of the pipeline, every default resolved."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    num_frames: int
    frame_rate: float
    steps: int
    guidance: float
    seed: int
    first_frame: Image.Image | None = None
    """Image to video: the first frame, at the run's size."""
    cache: StepCache | None = None
    """The model's step cache, for a request that asked for fast."""


@dataclass
class VideoPlan:
    spec: ModelSpec
    run: VideoRun
    encoded_frames: int
    seed: int
    width: int
    height: int
    """The output size the resolution names (1280x720 for 720p 16:9); the run's own
    size is the model's multiple covering it, and the frames are centre-cropped to this."""
    preview_every: int = 0
    preview_sink: PreviewSink | None = None

    def work(self, registry: ModelRegistry) -> Callable[[StepCallback], VideoResult]:
        def generate(on_step: StepCallback) -> VideoResult:
            pipe = registry.pipeline(self.spec, on_step)
            run = self.run
            with cached_steps(pipe, run.cache, run.steps):
                return run_video(
                    pipe,
                    prompt=run.prompt,
                    negative_prompt=run.negative_prompt,
                    width=run.width,
                    height=run.height,
                    num_frames=run.num_frames,
                    frame_rate=run.frame_rate,
                    steps=run.steps,
                    guidance=run.guidance,
                    seed=run.seed,
                    first_frame=run.first_frame,
                    on_step=on_step,
                    preview_every=self.preview_every,
                    on_preview=self.preview_sink,
                )

        return generate

    def encode(self, raw: VideoResult, on_step: StepCallback) -> list[Artifact]:
        """The MP4 (the first ``encoded_frames`` frames, centre-cropped to the output
        size) and a poster from the same frames.

        The servicer keeps ``raw`` referenced until the last chunk is sent, and a
        1080p 10 s clip is over a gigabyte of pixels, so the arrays are taken out
        of it here: once this returns, the encoded file is the only copy left.
        """
        frames = centre_crop(raw.frames[: self.encoded_frames], self.width, self.height)
        audio, sample_rate = raw.audio, raw.sample_rate
        raw.frames = np.empty((0, *raw.frames.shape[1:]), dtype=np.uint8)
        raw.audio = None
        total = frames.shape[0]

        def on_frame(done: int, _count: int) -> None:
            on_step(done, total + 1, "encoding")

        data = encode_mp4(frames, raw.fps, audio, sample_rate, on_frame=on_frame)
        poster = poster_frame(frames)
        del frames, audio
        facts = probe_mp4(data)
        poster_data = encode_image(poster, POSTER_FORMAT)
        on_step(total + 1, total + 1, "encoding")
        return [
            Artifact(
                data=data,
                content_type="video/mp4",
                file_name="generated-video-1.mp4",
                index=0,
                role=pb.ARTIFACT_ROLE_PRIMARY,
                width=facts.width,
                height=facts.height,
                duration_seconds=facts.duration_seconds,
                frame_count=facts.frame_count,
                frame_rate=facts.frame_rate,
            ),
            Artifact(
                data=poster_data,
                content_type=CONTENT_TYPES[POSTER_FORMAT],
                file_name="thumbnail-1.jpg",
                index=0,
                role=pb.ARTIFACT_ROLE_PREVIEW,
                width=poster.width,
                height=poster.height,
            ),
        ]


def plan_video(spec: ModelSpec, request: pb.GenerateVideoRequest) -> VideoPlan:
    """Resolves defaults and refuses what the model cannot make, before any queueing."""
    duration = request.duration_seconds or spec.default_duration
    if not spec.min_duration <= duration <= spec.max_duration:
        raise InvalidArgument(
            f"duration must be between {spec.min_duration} and {spec.max_duration} seconds "
            f"for {spec.name}; got {duration}"
        )
    resolution = accepted(
        "resolution", request.resolution or vocab.DEFAULT_RESOLUTION, spec.resolutions, spec
    )
    aspect_ratio = accepted(
        "aspect_ratio",
        request.aspect_ratio or vocab.DEFAULT_VIDEO_ASPECT_RATIO,
        spec.allowed_aspect_ratios,
        spec,
    )
    width, height = video_size(resolution, aspect_ratio, spec.size_factor)
    out_width, out_height = output_size(resolution, aspect_ratio)
    seed = random_seed(request.HasField("seed"), request.seed)
    run = VideoRun(
        prompt=prompt_text(request.prompt),
        negative_prompt=negative_text(request.negative_prompt, spec),
        width=width,
        height=height,
        num_frames=frame_count(duration, spec.frame_rate, spec.temporal_factor),
        frame_rate=spec.frame_rate,
        steps=steps_for(request.steps, spec),
        guidance=guidance_for(request.HasField("guidance_scale"), request.guidance_scale, spec),
        seed=seed,
        first_frame=first_frame(request, spec, (width, height)),
        cache=step_cache_for(request.fast, spec),
    )
    return VideoPlan(
        spec=spec,
        run=run,
        encoded_frames=encoded_frame_count(duration, spec.frame_rate),
        seed=seed,
        width=out_width,
        height=out_height,
        preview_every=preview_every(request.preview_every),
    )


def first_frame(
    request: pb.GenerateVideoRequest, spec: ModelSpec, size: tuple[int, int]
) -> Image.Image | None:
    """The request's first frame, scaled and centre-cropped to the run's size; only for a
    model that declares ``image_to_video``, and always for one that declares
    ``first_frame_required``."""
    if not request.init_image:
        if spec.first_frame_required:
            raise InvalidArgument(
                f"{spec.name} makes video only from a first frame: give init_image"
            )
        return None
    if not spec.image_to_video:
        raise InvalidArgument(f"{spec.name} does not serve image_to_video")
    image = decode_input_image(request.init_image).convert("RGB")
    return ImageOps.fit(image, size, Image.Resampling.LANCZOS)
